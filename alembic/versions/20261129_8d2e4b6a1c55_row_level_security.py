"""row level security: admin-only access to the monitoring tables

Revision ID: 8d2e4b6a1c55
Revises: 3f1c9a7e2b10
Create Date: 2026-11-29 00:45:00

Every monitoring table gets RLS enabled and forced (the owner is held to the policies too) and
no privilege for PUBLIC. Access goes to the NOLOGIN role ``monitoring_admin``: grant it to the
application's login role. On Supabase, ``anon`` loses every privilege, ``service_role`` (which
bypasses RLS) may read and write, and ``authenticated`` keeps only the four privileges RLS can
police, so that a user whose JWT ``app_metadata.role`` is ``admin`` gets in and nobody else does.
``user_metadata`` is writable by the user and is never trusted.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from cim_monitoring.errors import IrreversibleMigration

revision: str = "8d2e4b6a1c55"
down_revision: str | Sequence[str] | None = "3f1c9a7e2b10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("service_health_checks", "alert_events")
# TRUNCATE, REFERENCES and TRIGGER are outside RLS's reach: nobody but the owner gets them.
POLICED_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"

# squawk lints each revision of `alembic upgrade head --sql` (tests/test_migration_lint.py).
# This revision's exception, with its reason: data the lint test reads.
SQUAWK_EXCEPTIONS = {
    "require-statement-timeout": (
        "ENABLE/FORCE ROW LEVEL SECURITY, GRANT, REVOKE and CREATE POLICY change the catalog "
        "only (no rewrite, no scan); once lock_timeout lets them take the lock they are instant"
    ),
}

CREATE_ADMIN_ROLE = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'monitoring_admin') THEN
        CREATE ROLE monitoring_admin NOLOGIN;
    END IF;
EXCEPTION
    -- Roles are cluster-wide: another database's migration may create it at the same moment.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$
"""

SUPABASE_ACCESS = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        REVOKE ALL ON {table} FROM anon;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        GRANT {privileges} ON {table} TO service_role;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        REVOKE ALL ON {table} FROM authenticated;
        GRANT {privileges} ON {table} TO authenticated;
        IF to_regprocedure('auth.jwt()') IS NOT NULL THEN
            CREATE POLICY {table}_jwt_admin ON {table} FOR ALL TO authenticated
                USING (coalesce((SELECT auth.jwt()) -> 'app_metadata' ->> 'role', '') = 'admin')
                WITH CHECK (
                    coalesce((SELECT auth.jwt()) -> 'app_metadata' ->> 'role', '') = 'admin'
                );
        END IF;
    END IF;
END
$$
"""

# Alembic's own bookkeeping table: readable by its owner only. RLS is enabled but not forced so
# that the owner (whoever runs migrations) keeps using it; PostgREST roles see nothing.
# (Until cim-monitoring 0.2 the history was tracked in ``alembic_version`` and this revision hid
# that table; databases migrated then have run it so. The history now has its own table.)
HIDE_VERSION_TABLE = """
DO $$
BEGIN
    ALTER TABLE cim_monitoring_alembic_version ENABLE ROW LEVEL SECURITY;
    REVOKE ALL ON cim_monitoring_alembic_version FROM PUBLIC;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        REVOKE ALL ON cim_monitoring_alembic_version FROM anon;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        REVOKE ALL ON cim_monitoring_alembic_version FROM authenticated;
    END IF;
END
$$
"""


def upgrade() -> None:
    # Fail fast instead of queueing every query on the table behind a blocked ALTER.
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(CREATE_ADMIN_ROLE)
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"REVOKE ALL ON {table} FROM PUBLIC")
        op.execute(f"GRANT {POLICED_PRIVILEGES} ON {table} TO monitoring_admin")
        op.execute(
            f"CREATE POLICY {table}_admin_all ON {table} FOR ALL TO monitoring_admin "
            "USING (true) WITH CHECK (true)"
        )
        op.execute(SUPABASE_ACCESS.format(table=table, privileges=POLICED_PRIVILEGES))
    op.execute(HIDE_VERSION_TABLE)


def downgrade() -> None:
    raise IrreversibleMigration(revision)
