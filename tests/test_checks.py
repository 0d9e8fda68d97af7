"""Writing health checks: record_check and the COPY-based record_checks, on real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from cases import BAD_CHECK_FIELDS
from pydantic import ValidationError
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from cim_monitoring import HealthCheckIn, HealthCheckOut, record_check, record_checks
from cim_monitoring.models import ServiceHealthCheck
from cim_monitoring.repository.checks import CHUNK_SIZE

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def count(session: Session) -> int:
    return session.execute(select(func.count()).select_from(ServiceHealthCheck)).scalar_one()


def transaction_now(session: Session) -> datetime:
    return session.execute(select(func.now())).scalar_one()


def test_record_check_returns_the_stored_row(session: Session) -> None:
    stored = record_check(
        session,
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
    row = session.get(ServiceHealthCheck, stored.id)
    assert row is not None
    assert (row.service_name, row.latency_ms, row.created_at) == ("api", 812, T0)
    with pytest.raises(ValidationError):
        stored.status = "down"  # type: ignore[misc]  # outputs are frozen


def test_record_check_defaults(session: Session) -> None:
    stored = record_check(session, {"service_name": "api", "status": "down"})
    assert stored.latency_ms is None
    assert stored.probe_details == {}
    assert stored.error_message is None
    assert stored.created_at == transaction_now(session)
    assert stored.created_at.tzinfo is UTC
    injected = record_check(session, {"service_name": "api", "status": "down"}, now=T0)
    assert injected.created_at == T0


def test_outputs_are_utc_whatever_the_session_time_zone(session: Session) -> None:
    session.execute(text("SET LOCAL TimeZone = 'Asia/Kolkata'"))
    stored = record_check(session, {"service_name": "api", "status": "healthy", "created_at": T0})
    assert stored.created_at == T0
    assert stored.created_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(("field", "value", "fragment"), BAD_CHECK_FIELDS)
def test_record_check_rejects_and_writes_nothing(
    session: Session, field: str, value: Any, fragment: str
) -> None:
    record_check(session, {"service_name": "kept", "status": "healthy"})
    with pytest.raises(ValidationError, match=field):
        record_check(session, {"service_name": "api", "status": "healthy", field: value})
    assert count(session) == 1  # the transaction is usable and holds only the earlier row


def test_record_checks_copies_models_and_mappings(session: Session) -> None:
    checks: list[HealthCheckIn | dict[str, Any]] = [
        HealthCheckIn(service_name="api", status="healthy", latency_ms=3, created_at=T0),
        {"service_name": "db", "status": "down", "error_message": "refused"},
        {"service_name": "llm", "status": "degraded", "probe_details": {"model": "x", "n": [1]}},
    ]
    assert record_checks(session, checks) == 3
    rows = session.execute(
        select(ServiceHealthCheck).order_by(ServiceHealthCheck.service_name)
    ).scalars()
    got = [(r.service_name, r.status, r.latency_ms, r.probe_details, r.error_message) for r in rows]
    assert got == [
        ("api", "healthy", 3, {}, None),
        ("db", "down", None, {}, "refused"),
        ("llm", "degraded", None, {"model": "x", "n": [1]}, None),
    ]
    created = dict(
        session.execute(
            select(ServiceHealthCheck.service_name, ServiceHealthCheck.created_at)
        ).all()
    )
    now = transaction_now(session)
    assert created == {"api": T0, "db": now, "llm": now}


def test_record_checks_streams_a_generator_and_injects_now(session: Session) -> None:
    total = 2 * CHUNK_SIZE + 7

    def generate() -> Iterator[dict[str, Any]]:
        for i in range(total):
            yield {"service_name": f"svc{i % 3}", "status": "healthy", "latency_ms": i}

    assert record_checks(session, generate(), now=T0) == total
    assert count(session) == total
    times = session.execute(
        select(func.min(ServiceHealthCheck.created_at), func.max(ServiceHealthCheck.created_at))
    ).one()
    assert tuple(times) == (T0, T0)
    latencies = session.execute(select(func.sum(ServiceHealthCheck.latency_ms))).scalar_one()
    assert latencies == total * (total - 1) // 2


def test_record_checks_of_nothing(session: Session) -> None:
    assert record_checks(session, []) == 0
    assert count(session) == 0


@pytest.mark.parametrize(("field", "value", "fragment"), BAD_CHECK_FIELDS)
def test_record_checks_rejects_a_bad_row_by_index_and_keeps_nothing(
    session: Session, field: str, value: Any, fragment: str
) -> None:
    record_check(session, {"service_name": "kept", "status": "healthy"})
    bad_index = CHUNK_SIZE + 17  # the first chunk has already streamed when it is found
    rows = [{"service_name": "api", "status": "healthy"} for _ in range(CHUNK_SIZE + 40)]
    rows[bad_index] = {**rows[bad_index], field: value}
    with pytest.raises(ValidationError) as caught:
        record_checks(session, rows)
    [line] = caught.value.errors()
    assert line["loc"] == (bad_index, field)
    assert fragment in line["msg"]
    assert f"{bad_index}.{field}" in str(caught.value)
    assert count(session) == 1  # nothing of the batch; the caller's row and transaction remain
    assert record_checks(session, rows[:5]) == 5


def test_record_checks_rejects_a_non_mapping(session: Session) -> None:
    with pytest.raises(ValidationError) as caught:
        record_checks(session, [{"service_name": "a", "status": "down"}, "api is down"])  # type: ignore[list-item]
    assert caught.value.errors()[0]["loc"] == (1,)
    assert count(session) == 0


def test_record_checks_wraps_database_errors_and_keeps_the_transaction(session: Session) -> None:
    record_check(session, {"service_name": "kept", "status": "healthy"})
    session.execute(text("SET LOCAL transaction_read_only = on"))
    with pytest.raises(DBAPIError) as caught:
        record_checks(session, [{"service_name": "api", "status": "down"}])
    assert isinstance(caught.value.orig, psycopg.errors.ReadOnlySqlTransaction)
    assert count(session) == 1
