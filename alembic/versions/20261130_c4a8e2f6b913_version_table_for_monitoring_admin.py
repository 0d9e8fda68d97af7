"""own version table: protected, and readable by monitoring_admin

Revision ID: c4a8e2f6b913
Revises: b7e5d3c1a902
Create Date: 2026-11-30 14:30:00

A frozen snapshot: explicit SQL, never the live models.

The history is tracked in ``cim_monitoring_alembic_version`` (beside a host application's own
``alembic_version``). The application's login role, a member of ``monitoring_admin``, must be
able to read it: every ``cim-monitoring`` command checks the revision first. It gets SELECT
and a read-only policy (which also gives the RLS-enabled table the policy Supabase's linter
expects); nobody else gets anything. The protection is restated in full because a database
adopted from ``alembic_version`` had its new version table created by the adoption, after the
revision that protects it.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from cim_monitoring.errors import IrreversibleMigration

revision: str = "c4a8e2f6b913"
down_revision: str | Sequence[str] | None = "b7e5d3c1a902"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


SQUAWK_EXCEPTIONS = {
    "require-statement-timeout": (
        "RLS, GRANT, REVOKE and CREATE POLICY on the one-row version table change the catalog "
        "only; once lock_timeout lets them take the lock they are instant"
    ),
}

PROTECT = """
DO $$
DECLARE
    api_role text;
BEGIN
    ALTER TABLE cim_monitoring_alembic_version ENABLE ROW LEVEL SECURITY;
    REVOKE ALL ON cim_monitoring_alembic_version FROM PUBLIC;
    FOREACH api_role IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = api_role) THEN
            EXECUTE 'REVOKE ALL ON cim_monitoring_alembic_version FROM ' || quote_ident(api_role);
        END IF;
    END LOOP;
    GRANT SELECT ON cim_monitoring_alembic_version TO monitoring_admin;
    CREATE POLICY cim_monitoring_alembic_version_admin_read ON cim_monitoring_alembic_version
        FOR SELECT TO monitoring_admin USING (true);
END
$$
"""


def upgrade() -> None:
    # Fail fast instead of queueing every query on the table behind a blocked ALTER.
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(PROTECT)


def downgrade() -> None:
    raise IrreversibleMigration(revision)
