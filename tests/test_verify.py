"""verify_database: the library behind ``doctor``, callable from an application's health check.

Damage is done inside the test's transaction (DDL is transactional) and rolled back after it.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Connection, Engine, text

from cim_monitoring import Finding, verify_database
from cim_monitoring.models import Base

PER_TABLE = {
    "columns",
    "checks",
    "indexes",
    "partitions",
    "row_security",
    "policies",
    "grants",
    "readers",
}


def _failed(findings: list[Finding]) -> list[Finding]:
    return [finding for finding in findings if not finding.ok]


def test_a_migrated_database_passes_every_check(connection: Connection) -> None:
    findings = verify_database(connection)
    assert _failed(findings) == []
    assert findings[0].check == "revision"
    for table in Base.metadata.tables:
        covered = {f.check for f in findings if f.message.startswith(f"{table}: ")}
        assert covered == PER_TABLE, table


def test_the_application_role_can_verify(connection: Connection) -> None:
    """A health endpoint runs as the app's role: catalogue reads only, no privilege needed."""
    role = f"cim_app_{uuid.uuid4().hex[:10]}"
    connection.execute(text(f"CREATE ROLE {role} LOGIN"))
    connection.execute(text(f"GRANT monitoring_admin TO {role}"))
    connection.execute(text(f"SET LOCAL ROLE {role}"))
    assert _failed(verify_database(connection)) == []


@pytest.mark.parametrize(
    ("damage", "check", "named", "fix"),
    [
        (
            "DROP INDEX ix_alert_events_created_at",
            "indexes",
            "index ix_alert_events_created_at on alert_events is missing",
            "CREATE INDEX ix_alert_events_created_at ON alert_events (created_at)",
        ),
        (
            "ALTER TABLE service_health_daily NO FORCE ROW LEVEL SECURITY",
            "row_security",
            "row level security is not forced on service_health_daily",
            "ALTER TABLE service_health_daily FORCE ROW LEVEL SECURITY",
        ),
        (
            "GRANT TRUNCATE ON alert_events TO monitoring_admin",
            "grants",
            "role monitoring_admin holds TRUNCATE on alert_events",
            "REVOKE TRUNCATE ON alert_events FROM monitoring_admin",
        ),
        (
            "GRANT EXECUTE ON FUNCTION cim_monitoring.service_health_histogram_sum(integer[], "
            "integer[]) TO PUBLIC",
            "functions",
            "PUBLIC may execute cim_monitoring.service_health_histogram_sum(integer[],integer[])",
            "REVOKE EXECUTE ON FUNCTION cim_monitoring.service_health_histogram_sum",
        ),
        (
            "ALTER FUNCTION cim_monitoring.service_health_rollup() RESET search_path",
            "functions",
            "cim_monitoring.service_health_rollup() does not pin search_path",
            "ALTER FUNCTION cim_monitoring.service_health_rollup() SET search_path = ''",
        ),
        (
            "GRANT USAGE ON SEQUENCE service_health_checks_id_seq TO monitoring_admin",
            "sequences",
            "monitoring_admin holds USAGE on sequence service_health_checks_id_seq",
            "REVOKE ALL ON SEQUENCE service_health_checks_id_seq FROM monitoring_admin",
        ),
        (
            "GRANT CREATE ON SCHEMA cim_monitoring TO monitoring_admin",
            "function_schema",
            "monitoring_admin holds CREATE on schema cim_monitoring",
            "REVOKE CREATE ON SCHEMA cim_monitoring FROM monitoring_admin",
        ),
        (
            "CREATE POLICY everyone ON service_health_checks FOR SELECT TO PUBLIC USING (true)",
            "readers",
            "can read service_health_checks (policy everyone)",
            "drop or narrow policy everyone",
        ),
        (
            "ALTER TABLE cim_monitoring_alembic_version DISABLE ROW LEVEL SECURITY",
            "version_table",
            "row level security is disabled on cim_monitoring_alembic_version",
            "ALTER TABLE cim_monitoring_alembic_version ENABLE ROW LEVEL SECURITY",
        ),
        (
            "GRANT SELECT, UPDATE ON cim_monitoring_alembic_version TO PUBLIC",
            "version_table",
            "PUBLIC holds SELECT, UPDATE on cim_monitoring_alembic_version",
            "REVOKE ALL ON cim_monitoring_alembic_version FROM PUBLIC",
        ),
    ],
    ids=[
        "index",
        "rls-not-forced",
        "unpoliced-privilege",
        "public-function",
        "search-path",
        "sequence",
        "schema-create",
        "open-policy",
        "version-table-rls",
        "version-table-public",
    ],
)
def test_damage_is_a_failed_finding_with_its_fix(
    connection: Connection, damage: str, check: str, named: str, fix: str
) -> None:
    # A role of the cluster that an open policy would let read (roles are transactional too).
    connection.execute(text(f"CREATE ROLE cim_bystander_{uuid.uuid4().hex[:10]}"))
    connection.execute(text("GRANT SELECT ON service_health_checks TO PUBLIC"))
    connection.execute(text(damage))
    failed = next(f for f in _failed(verify_database(connection)) if named in f.message)
    assert failed.check == check
    assert failed.fix is not None
    assert fix in failed.fix


def test_an_unmigrated_database_stops_at_the_revision(empty_engine: Engine) -> None:
    [finding] = verify_database(empty_engine)
    assert (finding.check, finding.ok) == ("revision", False)
    assert finding.fix == "run `cim-monitoring migrate`"
