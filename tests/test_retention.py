"""purge_expired: what it deletes, what it never deletes, batching, and ingest alongside."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from pydantic import ValidationError
from scratch import migrated_engine
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from cim_monitoring import (
    PurgeResult,
    acknowledge_alert,
    make_session_factory,
    purge_expired,
    raise_alert,
    record_checks,
    resolve_alert,
)
from cim_monitoring.models import AlertEvent, ServiceHealthCheck

if TYPE_CHECKING:
    from conftest import PostgresServer

NOW = datetime(2024, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def scratch_engine(pg_server: PostgresServer) -> Iterator[Engine]:
    yield from migrated_engine(pg_server)


def seed(session: Session, *, expired: int, kept: int) -> dict[str, object]:
    """Checks on both sides of NOW - 30 days, and alerts in every state, old and new."""
    cutoff = NOW - 30 * DAY
    record_checks(
        session,
        [
            *(
                {"service_name": "api", "status": "healthy", "created_at": cutoff - DAY}
                for _ in range(expired)
            ),
            *(
                {"service_name": "api", "status": "healthy", "created_at": cutoff}
                for _ in range(kept)
            ),
        ],
    )
    old = cutoff - 10 * DAY

    def raised(alert_type: str) -> object:
        return raise_alert(
            session,
            {
                "service_name": "api",
                "alert_type": alert_type,
                "severity": "warning",
                "message": "m",
            },
            now=old,
        ).id

    open_old, acked_old = raised("still_active"), raised("still_acknowledged")
    acknowledge_alert(session, acked_old, by="ops", now=old)
    resolved_long_ago, resolved_recently = raised("resolved_long_ago"), raised("resolved_recently")
    resolve_alert(session, resolved_long_ago, by="ops", now=cutoff - DAY)
    resolve_alert(session, resolved_recently, by="ops", now=cutoff + DAY)
    return {"kept_alerts": {open_old, acked_old, resolved_recently}, "gone": resolved_long_ago}


def checks_left(session: Session) -> list[datetime]:
    return list(session.execute(select(ServiceHealthCheck.created_at)).scalars())


def alerts_left(session: Session) -> set[object]:
    return set(session.execute(select(AlertEvent.id)).scalars())


def test_purge_in_the_callers_session(session: Session, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="cim_monitoring.repository.retention")
    seeded = seed(session, expired=23, kept=4)
    with session.begin_nested() as attempt:
        result = purge_expired(session, batch_size=5, now=NOW)
        assert result == PurgeResult(cutoff=NOW - 30 * DAY, health_checks=23, alerts=1)
        assert checks_left(session) == [NOW - 30 * DAY] * 4  # exactly at the cut-off: kept
        assert alerts_left(session) == seeded["kept_alerts"]
        attempt.rollback()
    # It ran in the caller's transaction: rolling that back brings everything back.
    assert len(checks_left(session)) == 27
    batches = [r.count for r in caplog.records if r.getMessage() == "purge batch"]  # type: ignore[attr-defined]
    # Bounded batches of checks, then of alerts, then (none due) of hourly and daily rollups.
    assert batches == [5, 5, 5, 5, 3, 1, 0, 0]
    [summary] = [r for r in caplog.records if r.levelname == "INFO"]
    assert (summary.count, summary.health_checks, summary.alerts) == (24, 23, 1)  # type: ignore[attr-defined]


def test_purge_uses_the_database_clock_and_retention(session: Session) -> None:
    db_now = session.execute(select(func.now())).scalar_one()
    record_checks(
        session,
        [
            {"service_name": "api", "status": "down", "created_at": db_now - 8 * DAY},
            {"service_name": "api", "status": "down", "created_at": db_now - 6 * DAY},
        ],
    )
    result = purge_expired(session, older_than=timedelta(days=7))
    assert (result.cutoff, result.health_checks) == (db_now - 7 * DAY, 1)
    assert checks_left(session) == [db_now - 6 * DAY]


def test_purge_validates_its_arguments(session: Session) -> None:
    record_checks(
        session, [{"service_name": "api", "status": "down", "created_at": NOW - 365 * DAY}]
    )
    for kwargs in ({"older_than": timedelta(0)}, {"batch_size": 0}, {"now": datetime(2024, 1, 1)}):
        with pytest.raises(ValidationError, match=next(iter(kwargs))):
            purge_expired(session, **kwargs)  # type: ignore[arg-type]
    assert len(checks_left(session)) == 1


def test_purge_with_an_engine_while_ingest_goes_on(scratch_engine: Engine) -> None:
    factory = make_session_factory(scratch_engine)
    with factory.begin() as session:
        seeded = seed(session, expired=3000, kept=50)
    ingested = 0
    stop = threading.Event()

    def ingest() -> None:
        nonlocal ingested
        while not stop.is_set():
            with factory.begin() as session:
                rows = [
                    {"service_name": "live", "status": "healthy", "created_at": NOW}
                    for _ in range(20)
                ]
                ingested += record_checks(session, rows)

    worker = threading.Thread(target=ingest)
    worker.start()
    try:
        result = purge_expired(scratch_engine, batch_size=200, now=NOW)
    finally:
        stop.set()
        worker.join()
    assert (result.health_checks, result.alerts) == (3000, 1)
    assert ingested > 0
    with factory() as session:
        live = session.execute(
            select(func.count()).where(ServiceHealthCheck.service_name == "live")
        ).scalar_one()
        assert live == ingested
        assert sorted(set(checks_left(session))) == [NOW - 30 * DAY, NOW]
        assert alerts_left(session) == seeded["kept_alerts"]
