"""Writing health checks: record_check and the COPY-based record_checks, on real PostgreSQL,
through both faces (sync Session and AsyncSession)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from cases import BAD_CHECK_FIELDS
from faces import Face
from pydantic import ValidationError
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from cim_monitoring import HealthCheckIn, HealthCheckOut
from cim_monitoring.models import ServiceHealthCheck
from cim_monitoring.repository.checks import CHUNK_SIZE

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def count(face: Face) -> int:
    return face.scalar(select(func.count()).select_from(ServiceHealthCheck))


def transaction_now(face: Face) -> datetime:
    return face.scalar(select(func.now()))


def test_record_check_returns_the_stored_row(face: Face) -> None:
    stored = face.record_check(
        HealthCheckIn(
            service_name="api",
            status="degraded",
            latency_ms=812,
            probe_details={"http": 503, "note": "é"},
            error_message="slow",
            created_at=T0,
        ),
    )
    assert isinstance(stored, HealthCheckOut)
    assert stored.model_dump(exclude={"id"}) == {
        "service_name": "api",
        "status": "degraded",
        "latency_ms": 812,
        "probe_details": {"http": 503, "note": "é"},
        "error_message": "slow",
        "created_at": T0,
    }
    row = face.execute(
        select(
            ServiceHealthCheck.service_name,
            ServiceHealthCheck.latency_ms,
            ServiceHealthCheck.created_at,
        ).where(ServiceHealthCheck.id == stored.id)
    ).one()
    assert tuple(row) == ("api", 812, T0)
    with pytest.raises(ValidationError):
        stored.status = "down"  # type: ignore[misc]  # outputs are frozen


def test_record_check_defaults(face: Face) -> None:
    stored = face.record_check({"service_name": "api", "status": "down"})
    assert stored.latency_ms is None
    assert stored.probe_details == {}
    assert stored.error_message is None
    assert stored.created_at == transaction_now(face)
    assert stored.created_at.tzinfo is UTC
    injected = face.record_check({"service_name": "api", "status": "down"}, now=T0)
    assert injected.created_at == T0


def test_outputs_are_utc_whatever_the_session_time_zone(face: Face) -> None:
    face.execute(text("SET LOCAL TimeZone = 'Asia/Kolkata'"))
    stored = face.record_check({"service_name": "api", "status": "healthy", "created_at": T0})
    assert stored.created_at == T0
    assert stored.created_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(("field", "value", "fragment"), BAD_CHECK_FIELDS)
def test_record_check_rejects_and_writes_nothing(
    face: Face, field: str, value: Any, fragment: str
) -> None:
    face.record_check({"service_name": "kept", "status": "healthy"})
    with pytest.raises(ValidationError, match=field):
        face.record_check({"service_name": "api", "status": "healthy", field: value})
    assert count(face) == 1  # the transaction is usable and holds only the earlier row


@pytest.mark.parametrize("function", ["record_check", "record_checks"])
@pytest.mark.parametrize("now", [0, 1_700_000_000, "2024-01-01T00:00:00Z", datetime(2024, 1, 1)])
def test_now_must_be_an_aware_datetime(face: Face, function: str, now: Any) -> None:
    checks = {"service_name": "api", "status": "healthy"}
    with pytest.raises(ValidationError, match="now"):
        getattr(face, function)(checks if function == "record_check" else [checks], now=now)
    assert count(face) == 0


def test_record_checks_copies_models_and_mappings(face: Face) -> None:
    checks: list[HealthCheckIn | dict[str, Any]] = [
        HealthCheckIn(service_name="api", status="healthy", latency_ms=3, created_at=T0),
        {"service_name": "db", "status": "down", "error_message": "refused"},
        {"service_name": "llm", "status": "degraded", "probe_details": {"model": "x", "n": [1]}},
    ]
    assert face.record_checks(checks) == 3
    rows = face.execute(
        select(ServiceHealthCheck).order_by(ServiceHealthCheck.service_name)
    ).scalars()
    got = [(r.service_name, r.status, r.latency_ms, r.probe_details, r.error_message) for r in rows]
    assert got == [
        ("api", "healthy", 3, {}, None),
        ("db", "down", None, {}, "refused"),
        ("llm", "degraded", None, {"model": "x", "n": [1]}, None),
    ]
    created = dict(
        face.execute(select(ServiceHealthCheck.service_name, ServiceHealthCheck.created_at)).all()
    )
    now = transaction_now(face)
    assert created == {"api": T0, "db": now, "llm": now}


def test_record_checks_streams_a_generator_and_injects_now(face: Face) -> None:
    total = 2 * CHUNK_SIZE + 7

    def generate() -> Iterator[dict[str, Any]]:
        for i in range(total):
            yield {"service_name": f"svc{i % 3}", "status": "healthy", "latency_ms": i}

    assert face.record_checks(generate(), now=T0) == total
    assert count(face) == total
    times = face.execute(
        select(func.min(ServiceHealthCheck.created_at), func.max(ServiceHealthCheck.created_at))
    ).one()
    assert tuple(times) == (T0, T0)
    latencies = face.scalar(select(func.sum(ServiceHealthCheck.latency_ms)))
    assert latencies == total * (total - 1) // 2


def test_record_checks_of_nothing(face: Face) -> None:
    assert face.record_checks([]) == 0
    assert count(face) == 0


@pytest.mark.parametrize(("field", "value", "fragment"), BAD_CHECK_FIELDS)
def test_record_checks_rejects_a_bad_row_by_index_and_keeps_nothing(
    face: Face, field: str, value: Any, fragment: str
) -> None:
    face.record_check({"service_name": "kept", "status": "healthy"})
    bad_index = CHUNK_SIZE + 17  # the first chunk has already streamed when it is found
    rows = [{"service_name": "api", "status": "healthy"} for _ in range(CHUNK_SIZE + 40)]
    rows[bad_index] = {**rows[bad_index], field: value}
    with pytest.raises(ValidationError) as caught:
        face.record_checks(rows)
    [line] = caught.value.errors()
    assert line["loc"] == (bad_index, field)
    assert fragment in line["msg"]
    assert f"{bad_index}.{field}" in str(caught.value)
    assert count(face) == 1  # nothing of the batch; the caller's row and transaction remain
    assert face.record_checks(rows[:5]) == 5


def test_record_checks_as_an_application_role_writes_each_batch_once(face: Face) -> None:
    """A non-superuser member of monitoring_admin, as the application connects: RLS applies, so
    record_checks stages its COPY in a temporary table that lives as long as the session. Calls
    in one transaction, one of them refused after its first chunk had streamed, must not write
    any row of another call again, nor keep any row of the refused one."""
    role = f"cim_test_writer_{uuid.uuid4().hex[:12]}"
    face.execute(text(f"CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS"))
    face.execute(text(f"GRANT monitoring_admin TO {role}"))
    face.execute(text(f"SET LOCAL ROLE {role}"))
    assert face.scalar(text("SELECT row_security_active('service_health_checks')")) is True
    assert face.record_checks([{"service_name": "first", "status": "healthy"}] * 2) == 2
    refused = [{"service_name": "refused", "status": "healthy"}] * CHUNK_SIZE
    with pytest.raises(ValidationError):
        face.record_checks([*refused, {"service_name": "refused", "status": "unknown"}])
    assert face.record_checks([{"service_name": "second", "status": "down"}] * 3) == 3
    name = ServiceHealthCheck.service_name
    written = face.execute(select(name, func.count()).group_by(name).order_by(name)).all()
    assert [tuple(row) for row in written] == [("first", 2), ("second", 3)]


def test_record_checks_rejects_a_non_mapping(face: Face) -> None:
    with pytest.raises(ValidationError) as caught:
        face.record_checks([{"service_name": "a", "status": "down"}, "api is down"])
    assert caught.value.errors()[0]["loc"] == (1,)
    assert count(face) == 0


def test_record_checks_wraps_database_errors_and_keeps_the_transaction(face: Face) -> None:
    face.record_check({"service_name": "kept", "status": "healthy"})
    face.execute(text("SET LOCAL transaction_read_only = on"))
    with pytest.raises(DBAPIError) as caught:
        face.record_checks([{"service_name": "api", "status": "down"}])
    assert isinstance(caught.value.orig, psycopg.errors.ReadOnlySqlTransaction)
    assert count(face) == 1


@pytest.mark.parametrize(
    "created_at",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_record_checks_refuses_what_is_out_of_range_in_utc_for_a_known_service(
    face: Face, created_at: datetime
) -> None:
    # Once a service name has been seen, plain dicts take a short path past the model: it must
    # still refuse a moment that only leaves the datetime range once converted to UTC.
    face.record_checks([{"service_name": "edge", "status": "healthy", "created_at": T0}])
    with pytest.raises(ValidationError, match="out of range once converted to UTC"):
        face.record_checks([{"service_name": "edge", "status": "down", "created_at": created_at}])
    assert count(face) == 1
