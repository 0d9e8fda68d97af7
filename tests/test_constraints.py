"""Every CHECK, default and unique index of the schema, through raw SQL (no Python validation).

Each rejected statement runs inside a SAVEPOINT so the test's outer transaction survives it,
and the failure must name the constraint that was meant to catch it.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg import errors as pg_errors
from sqlalchemy import Connection, Row, text
from sqlalchemy.exc import DBAPIError, IntegrityError

HEALTH = "service_health_checks"
ALERTS = "alert_events"
JSONB_COLUMNS = frozenset({"probe_details", "details"})
BASE_ROWS: dict[str, dict[str, Any]] = {
    HEALTH: {"service_name": "api", "status": "healthy"},
    ALERTS: {
        "service_name": "api",
        "alert_type": "service_down",
        "severity": "critical",
        "message": "api is down",
    },
}
NOW = datetime.now(UTC)


def insert(connection: Connection, table: str, **values: Any) -> Row[Any]:
    """INSERT one row of ``table``: a minimal valid row overridden by ``values``."""
    row = {**BASE_ROWS[table], **values}
    placeholders = ", ".join(
        f"CAST(:{name} AS jsonb)" if name in JSONB_COLUMNS else f":{name}" for name in row
    )
    statement = f"INSERT INTO {table} ({', '.join(row)}) VALUES ({placeholders}) RETURNING *"
    return connection.execute(text(statement), row).one()


def assert_rejected(connection: Connection, table: str, constraint: str, **values: Any) -> None:
    with pytest.raises(IntegrityError) as caught, connection.begin_nested():
        insert(connection, table, **values)
    assert caught.value.orig is not None
    assert caught.value.orig.diag.constraint_name == constraint  # type: ignore[attr-defined]


# (table, column values, name of the CHECK that must reject them)
REJECTED = [
    *(
        pytest.param(
            table, {"service_name": name}, f"ck_{table}_service_name_valid", id=f"{table}-{id_}"
        )
        for table in (HEALTH, ALERTS)
        for id_, name in [
            ("empty", ""),
            ("101-chars", "x" * 101),
            ("101-emoji", "\U0001f680" * 101),
            ("soh", "api\x01"),
            ("unit-separator", "a\x1fb"),
            ("tab", "a\tb"),
            ("newline", "api\n"),
            ("del", "api\x7f"),
            ("nel", "api\x85"),
            ("c1-last", "\x9fapi"),
        ]
    ),
    pytest.param(
        HEALTH, {"status": "unknown"}, "ck_service_health_checks_status_valid", id="hc-status"
    ),
    pytest.param(
        HEALTH, {"status": "Healthy"}, "ck_service_health_checks_status_valid", id="hc-status-case"
    ),
    pytest.param(
        HEALTH, {"status": ""}, "ck_service_health_checks_status_valid", id="hc-status-empty"
    ),
    pytest.param(
        HEALTH,
        {"latency_ms": -1},
        "ck_service_health_checks_latency_ms_non_negative",
        id="latency-1",
    ),
    *(
        pytest.param(
            table, {column: document}, f"ck_{table}_{column}_is_object", id=f"{column}-{kind}"
        )
        for table, column in [(HEALTH, "probe_details"), (ALERTS, "details")]
        for kind, document in [
            ("array", "[]"),
            ("string", '"x"'),
            ("number", "1"),
            ("null", "null"),
        ]
    ),
    *(
        pytest.param(
            ALERTS, {"alert_type": slug}, "ck_alert_events_alert_type_slug", id=f"slug-{id_}"
        )
        for id_, slug in [
            ("empty", ""),
            ("uppercase", "Service_down"),
            ("leading-digit", "1_down"),
            ("leading-underscore", "_down"),
            ("dash", "service-down"),
            ("space", "service down"),
            ("trailing-newline", "service_down\n"),
            ("64-chars", "a" * 64),
        ]
    ),
    pytest.param(ALERTS, {"severity": "error"}, "ck_alert_events_severity_valid", id="severity"),
    pytest.param(
        ALERTS, {"severity": "Critical"}, "ck_alert_events_severity_valid", id="severity-case"
    ),
    pytest.param(
        ALERTS, {"occurrence_count": 0}, "ck_alert_events_occurrence_count_positive", id="count-0"
    ),
    pytest.param(
        ALERTS,
        {"occurrence_count": -1},
        "ck_alert_events_occurrence_count_positive",
        id="count-neg",
    ),
    *(
        pytest.param(ALERTS, values, f"ck_alert_events_{constraint}", id=id_)
        for id_, constraint, values in [
            (
                "active-acknowledged",
                "status_timestamps_consistent",
                {"status": "active", "acknowledged_at": NOW, "acknowledged_by": "ops"},
            ),
            (
                "active-resolved",
                "status_timestamps_consistent",
                {"status": "active", "resolved_at": NOW, "resolved_by": "ops"},
            ),
            ("acknowledged-no-time", "status_timestamps_consistent", {"status": "acknowledged"}),
            (
                "acknowledged-and-resolved",
                "status_timestamps_consistent",
                {
                    "status": "acknowledged",
                    "acknowledged_at": NOW,
                    "acknowledged_by": "ops",
                    "resolved_at": NOW,
                    "resolved_by": "ops",
                },
            ),
            ("resolved-no-time", "status_timestamps_consistent", {"status": "resolved"}),
            (
                "acknowledged-no-actor",
                "actor_recorded",
                {"status": "acknowledged", "acknowledged_at": NOW},
            ),
            ("actor-no-time", "actor_recorded", {"acknowledged_by": "ops"}),
            ("resolved-no-actor", "actor_recorded", {"status": "resolved", "resolved_at": NOW}),
        ]
    ),
]

ACCEPTED = [
    *(
        pytest.param(table, {"service_name": name}, id=f"{table}-{id_}")
        for table in (HEALTH, ALERTS)
        for id_, name in [
            ("1-char", "a"),
            ("100-chars", "x" * 100),
            ("100-emoji", "\U0001f680" * 100),
            ("accents", "café-äöü"),
            ("emoji", "storage \U0001f4be"),
            ("rtl", "שירות-מסמכים"),
            ("cjk", "文档服务"),
            ("nbsp", "doc\u00a0ai"),
        ]
    ),
    *(pytest.param(HEALTH, {"status": s}, id=f"hc-{s}") for s in ("healthy", "degraded", "down")),
    pytest.param(HEALTH, {"latency_ms": 0}, id="latency-0"),
    pytest.param(HEALTH, {"latency_ms": None}, id="latency-null"),
    pytest.param(HEALTH, {"latency_ms": 2_147_483_647}, id="latency-max"),
    pytest.param(HEALTH, {"probe_details": "{}"}, id="probe-empty-object"),
    pytest.param(HEALTH, {"probe_details": '{"a": [1, null]}'}, id="probe-object"),
    pytest.param(ALERTS, {"details": "{}"}, id="details-empty-object"),
    *(
        pytest.param(ALERTS, {"alert_type": slug}, id=f"slug-{slug[:12]}")
        for slug in ("a", "high_latency", "x9_", "a" * 63)
    ),
    *(
        pytest.param(ALERTS, {"severity": s}, id=f"severity-{s}")
        for s in ("info", "warning", "critical")
    ),
    pytest.param(ALERTS, {"occurrence_count": 1}, id="count-1"),
    pytest.param(
        ALERTS,
        {"status": "acknowledged", "acknowledged_at": NOW, "acknowledged_by": "ops"},
        id="acknowledged",
    ),
    pytest.param(
        ALERTS, {"status": "resolved", "resolved_at": NOW, "resolved_by": "ops"}, id="resolved"
    ),
    pytest.param(
        ALERTS,
        {
            "status": "resolved",
            "acknowledged_at": NOW,
            "acknowledged_by": "ops",
            "resolved_at": NOW,
            "resolved_by": "ops",
        },
        id="resolved-after-acknowledged",
    ),
]


@pytest.mark.parametrize(("table", "values", "constraint"), REJECTED)
def test_check_rejects(
    connection: Connection, table: str, values: dict[str, Any], constraint: str
) -> None:
    assert_rejected(connection, table, constraint, **values)
    # The savepoint kept the outer transaction usable.
    assert connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0


@pytest.mark.parametrize(("table", "values"), ACCEPTED)
def test_check_accepts_edge_values(
    connection: Connection, table: str, values: dict[str, Any]
) -> None:
    row = insert(connection, table, **values)
    for column, value in values.items():
        expected = json.loads(value) if column in JSONB_COLUMNS else value
        assert getattr(row, column) == expected


def test_every_check_constraint_is_exercised(connection: Connection) -> None:
    """A CHECK added to the schema without a rejecting case here fails this test."""
    names = connection.execute(
        text(
            "SELECT conname FROM pg_constraint WHERE contype = 'c' "
            "AND conrelid IN ('service_health_checks'::regclass, 'alert_events'::regclass)"
        )
    ).scalars()
    covered = {case.values[2] for case in REJECTED} | {"ck_alert_events_status_valid"}
    assert set(names) == covered


def test_alert_status_valid(connection: Connection) -> None:
    """An unknown status also breaks the status/timestamps CHECK, which PostgreSQL evaluates
    first; without it (dropped inside a rolled-back savepoint) status_valid must still hold."""
    with connection.begin_nested() as shadowed:
        connection.execute(
            text(
                "ALTER TABLE alert_events "
                "DROP CONSTRAINT ck_alert_events_status_timestamps_consistent"
            )
        )
        for status in ("closed", "Active", ""):
            assert_rejected(connection, ALERTS, "ck_alert_events_status_valid", status=status)
        shadowed.rollback()
    for status in ("closed", "Active"):
        assert_rejected(
            connection, ALERTS, "ck_alert_events_status_timestamps_consistent", status=status
        )


def test_defaults(connection: Connection) -> None:
    check = connection.execute(
        text(
            "INSERT INTO service_health_checks (service_name, status) VALUES ('api', 'down') "
            "RETURNING id, latency_ms, probe_details, error_message, created_at = now() AS now"
        )
    ).one()
    assert isinstance(check.id, int)
    assert (check.latency_ms, check.probe_details, check.error_message, check.now) == (
        None,
        {},
        None,
        True,
    )
    alert = connection.execute(
        text(
            "INSERT INTO alert_events (service_name, alert_type, severity, message) "
            "VALUES ('api', 'service_down', 'critical', 'down') "
            "RETURNING id, status, details, occurrence_count, created_at = now() AS created_now, "
            "last_seen_at = now() AS seen_now, acknowledged_at, acknowledged_by, resolved_at, "
            "resolved_by"
        )
    ).one()
    assert isinstance(alert.id, uuid.UUID)
    assert alert.id.version == 4
    assert alert[1:] == ("active", {}, 1, True, True, None, None, None, None)


def test_identity_is_generated_always(connection: Connection) -> None:
    with pytest.raises(DBAPIError) as caught, connection.begin_nested():
        insert(connection, HEALTH, id=1)
    assert isinstance(caught.value.orig, pg_errors.GeneratedAlways)
    first, second = (insert(connection, HEALTH).id for _ in range(2))
    assert second > first


def test_one_open_alert_per_service_and_type(connection: Connection) -> None:
    index = "uq_alert_events_open_service_name_alert_type"
    first = insert(connection, ALERTS)
    assert_rejected(connection, ALERTS, index)
    assert_rejected(
        connection,
        ALERTS,
        index,
        status="acknowledged",
        acknowledged_at=NOW,
        acknowledged_by="ops",
    )
    # Another type, or another service, is another alert.
    insert(connection, ALERTS, alert_type="high_latency")
    insert(connection, ALERTS, service_name="storage")
    # A resolved alert no longer blocks a new one; resolved ones may pile up.
    insert(connection, ALERTS, status="resolved", resolved_at=NOW, resolved_by="ops")
    connection.execute(
        text(
            "UPDATE alert_events SET status = 'resolved', resolved_at = now(), resolved_by = 'ops' "
            "WHERE id = :id"
        ),
        {"id": first.id},
    )
    insert(connection, ALERTS)
    assert_rejected(connection, ALERTS, index)
    open_alerts = connection.execute(
        text(
            "SELECT count(*) FROM alert_events WHERE service_name = 'api' "
            "AND alert_type = 'service_down' AND status <> 'resolved'"
        )
    ).scalar_one()
    assert open_alerts == 1
