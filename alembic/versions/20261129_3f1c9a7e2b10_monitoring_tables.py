"""service_health_checks and alert_events

Revision ID: 3f1c9a7e2b10
Revises:
Create Date: 2026-11-29 00:40:00

A frozen snapshot: explicit columns and op.* calls, never the live models.

The tables are locked down before this revision ends (RLS enabled and forced, no privilege for
PUBLIC or Supabase's API roles), so that no committed state shows them open, even to a runner
that commits revision by revision; the next revision lets monitoring_admin in.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from cim_monitoring.errors import IrreversibleMigration

revision: str = "3f1c9a7e2b10"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE_NAME_VALID = (
    "char_length(service_name) BETWEEN 1 AND 100 "
    "AND service_name !~ '[\\u0001-\\u001f\\u007f-\\u009f]'"
)
EMPTY_OBJECT = sa.text("'{}'::jsonb")
NOW = sa.text("now()")

# squawk lints each revision of `alembic upgrade head --sql` (tests/test_migration_lint.py).
# This revision's exceptions, each with its reason: data the lint test reads.
# Until the next revision's policies, only superusers and BYPASSRLS roles get in. (On Supabase
# the default privileges grant anon and authenticated every new table, the version table too.)
LOCK_DOWN = """
DO $$
DECLARE
    target text;
    api_role text;
BEGIN
    FOREACH target IN ARRAY ARRAY['service_health_checks', 'alert_events',
                                  'cim_monitoring_alembic_version'] LOOP
        EXECUTE 'ALTER TABLE ' || quote_ident(target) || ' ENABLE ROW LEVEL SECURITY';
        EXECUTE 'REVOKE ALL ON ' || quote_ident(target) || ' FROM PUBLIC';
        FOREACH api_role IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = api_role) THEN
                EXECUTE 'REVOKE ALL ON ' || quote_ident(target) || ' FROM '
                    || quote_ident(api_role);
            END IF;
        END LOOP;
    END LOOP;
    ALTER TABLE service_health_checks FORCE ROW LEVEL SECURITY;
    ALTER TABLE alert_events FORCE ROW LEVEL SECURITY;
END
$$
"""

SQUAWK_EXCEPTIONS = {
    "require-statement-timeout": (
        "both tables are created in this transaction, empty and invisible to other sessions "
        "until COMMIT, so no statement here is slow or blocks anyone"
    ),
    "prefer-bigint-over-int": (
        "latency_ms and occurrence_count are bounded measurements, not keys (the keys are "
        "bigint identity and uuid); the schema contract in DESIGN.md makes them integer"
    ),
}


def upgrade() -> None:
    # Fail fast instead of queueing every query on the table behind a blocked ALTER.
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "service_health_checks",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("service_name", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column(
            "probe_details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=EMPTY_OBJECT,
            nullable=False,
        ),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_health_checks")),
        sa.CheckConstraint(
            SERVICE_NAME_VALID, name=op.f("ck_service_health_checks_service_name_valid")
        ),
        sa.CheckConstraint(
            "status IN ('healthy', 'degraded', 'down')",
            name=op.f("ck_service_health_checks_status_valid"),
        ),
        sa.CheckConstraint(
            "latency_ms >= 0", name=op.f("ck_service_health_checks_latency_ms_non_negative")
        ),
        sa.CheckConstraint(
            "jsonb_typeof(probe_details) = 'object'",
            name=op.f("ck_service_health_checks_probe_details_is_object"),
        ),
    )
    op.create_index(
        op.f("ix_service_health_checks_created_at"), "service_health_checks", ["created_at"]
    )
    op.create_index(
        op.f("ix_service_health_checks_service_name_created_at"),
        "service_health_checks",
        ["service_name", sa.literal_column("created_at DESC")],
    )

    op.create_table(
        "alert_events",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("service_name", sa.Text(), nullable=False),
        sa.Column("alert_type", sa.Text(), nullable=False),
        sa.Column("severity", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'active'"), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=EMPTY_OBJECT,
            nullable=False,
        ),
        sa.Column("occurrence_count", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.Text(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_events")),
        sa.CheckConstraint(SERVICE_NAME_VALID, name=op.f("ck_alert_events_service_name_valid")),
        sa.CheckConstraint(
            "alert_type ~ '^[a-z][a-z0-9_]{0,62}$'", name=op.f("ck_alert_events_alert_type_slug")
        ),
        sa.CheckConstraint(
            "severity IN ('info', 'warning', 'critical')",
            name=op.f("ck_alert_events_severity_valid"),
        ),
        sa.CheckConstraint(
            "status IN ('active', 'acknowledged', 'resolved')",
            name=op.f("ck_alert_events_status_valid"),
        ),
        sa.CheckConstraint(
            "jsonb_typeof(details) = 'object'", name=op.f("ck_alert_events_details_is_object")
        ),
        sa.CheckConstraint(
            "occurrence_count >= 1", name=op.f("ck_alert_events_occurrence_count_positive")
        ),
        sa.CheckConstraint(
            "(status = 'active' AND acknowledged_at IS NULL AND resolved_at IS NULL)"
            " OR (status = 'acknowledged' AND acknowledged_at IS NOT NULL AND resolved_at IS NULL)"
            " OR (status = 'resolved' AND resolved_at IS NOT NULL)",
            name=op.f("ck_alert_events_status_timestamps_consistent"),
        ),
        sa.CheckConstraint(
            "(acknowledged_at IS NULL) = (acknowledged_by IS NULL)"
            " AND (resolved_at IS NULL) = (resolved_by IS NULL)",
            name=op.f("ck_alert_events_actor_recorded"),
        ),
    )
    op.create_index(op.f("ix_alert_events_created_at"), "alert_events", ["created_at"])
    # At most one open alert per service and type: raising it again bumps the open one.
    op.create_index(
        op.f("uq_alert_events_open_service_name_alert_type"),
        "alert_events",
        ["service_name", "alert_type"],
        unique=True,
        postgresql_where=sa.text("status <> 'resolved'"),
    )
    op.execute(LOCK_DOWN)


def downgrade() -> None:
    raise IrreversibleMigration(revision)
