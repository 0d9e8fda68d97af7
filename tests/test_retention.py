"""purge_expired: what it deletes, what it never deletes, batching, and ingest alongside; both
faces (a Session or an Engine, an AsyncSession or an AsyncEngine)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from faces import Face, FaceKind
from pydantic import ValidationError
from scratch import migrated_engine
from sqlalchemy import Engine, func, select, text

from cim_monitoring import (
    PurgeResult,
    make_session_factory,
    purge_expired,
    record_checks,
)
from cim_monitoring.models import AlertEvent, ServiceHealthCheck

if TYPE_CHECKING:
    from conftest import PostgresServer

NOW = datetime(2024, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
TABLES = ("service_health_checks", "alert_events", "service_health_hourly", "service_health_daily")


@pytest.fixture(scope="module")
def module_engine(pg_server: PostgresServer) -> Iterator[Engine]:
    yield from migrated_engine(pg_server)


@pytest.fixture
def scratch_engine(module_engine: Engine) -> Engine:
    """The module's database, emptied: its tests commit for real."""
    with module_engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(TABLES)}"))
    return module_engine


def seed(face: Face, *, expired: int, kept: int) -> dict[str, object]:
    """Checks on both sides of NOW - 30 days, and alerts in every state, old and new."""
    cutoff = NOW - 30 * DAY
    face.record_checks(
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
        return face.raise_alert(
            {
                "service_name": "api",
                "alert_type": alert_type,
                "severity": "warning",
                "message": "m",
            },
            now=old,
        ).id

    open_old, acked_old = raised("still_active"), raised("still_acknowledged")
    face.acknowledge_alert(acked_old, by="ops", now=old)
    resolved_long_ago, resolved_recently = raised("resolved_long_ago"), raised("resolved_recently")
    face.resolve_alert(resolved_long_ago, by="ops", now=cutoff - DAY)
    face.resolve_alert(resolved_recently, by="ops", now=cutoff + DAY)
    return {"kept_alerts": {open_old, acked_old, resolved_recently}, "gone": resolved_long_ago}


def checks_left(face: Face) -> list[datetime]:
    return list(face.execute(select(ServiceHealthCheck.created_at)).scalars())


def alerts_left(face: Face) -> set[object]:
    return set(face.execute(select(AlertEvent.id)).scalars())


def test_purge_in_the_callers_session(face: Face, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="cim_monitoring.repository.retention")
    seeded = seed(face, expired=23, kept=4)
    with face.rolled_back():
        result = face.purge_expired(batch_size=5, now=NOW)
        assert result == PurgeResult(cutoff=NOW - 30 * DAY, health_checks=23, alerts=1)
        assert checks_left(face) == [NOW - 30 * DAY] * 4  # exactly at the cut-off: kept
        assert alerts_left(face) == seeded["kept_alerts"]
    # It ran in the caller's transaction: rolling that back brings everything back.
    assert len(checks_left(face)) == 27
    batches = [r.count for r in caplog.records if r.getMessage() == "purge batch"]  # type: ignore[attr-defined]
    # Bounded batches of checks, then of alerts, then (none due) of states, hourly and daily
    # rollups, running totals and status changes.
    assert batches == [5, 5, 5, 5, 3, 1, 0, 0, 0, 0, 0]
    [summary] = [r for r in caplog.records if r.levelname == "INFO"]
    assert (summary.count, summary.health_checks, summary.alerts) == (24, 23, 1)  # type: ignore[attr-defined]


def test_purge_uses_the_database_clock_and_retention(face: Face) -> None:
    db_now = face.execute(select(func.now())).scalar_one()
    face.record_checks(
        [
            {"service_name": "api", "status": "down", "created_at": db_now - 8 * DAY},
            {"service_name": "api", "status": "down", "created_at": db_now - 6 * DAY},
        ],
    )
    result = face.purge_expired(older_than=timedelta(days=7))
    assert (result.cutoff, result.health_checks) == (db_now - 7 * DAY, 1)
    assert checks_left(face) == [db_now - 6 * DAY]


def test_purge_validates_its_arguments(face: Face) -> None:
    face.record_checks([{"service_name": "api", "status": "down", "created_at": NOW - 365 * DAY}])
    for kwargs in ({"older_than": timedelta(0)}, {"batch_size": 0}, {"now": datetime(2024, 1, 1)}):
        with pytest.raises(ValidationError, match=next(iter(kwargs))):
            face.purge_expired(**kwargs)  # type: ignore[arg-type]
    assert len(checks_left(face)) == 1


@pytest.mark.parametrize("argument", ["older_than", "rollups_older_than"])
@pytest.mark.parametrize("value", [30, 30.0, "P30D", "30 days"])
def test_purge_durations_must_be_timedeltas(face: Face, argument: str, value: object) -> None:
    # older_than=30 used to mean 30 seconds, and deleted everything older than half a minute.
    face.record_checks([{"service_name": "api", "status": "down", "created_at": NOW - DAY}])
    with pytest.raises(ValidationError, match=argument):
        face.purge_expired(now=NOW, **{argument: value})
    assert len(checks_left(face)) == 1


@pytest.mark.parametrize("now", [0, 1_709_251_200, "2024-03-01T00:00:00Z"])
def test_purge_now_must_be_an_aware_datetime(face: Face, now: object) -> None:
    face.record_checks([{"service_name": "api", "status": "down", "created_at": NOW - DAY}])
    with pytest.raises(ValidationError, match="now"):
        face.purge_expired(now=now)
    assert len(checks_left(face)) == 1


def test_purge_with_an_engine_while_ingest_goes_on(
    face_kind: FaceKind, scratch_engine: Engine
) -> None:
    engine = face_kind.engine(scratch_engine.url)
    with face_kind.begin(engine) as face:
        seeded = seed(face, expired=3000, kept=50)
    ingested = 0
    stop = threading.Event()

    def ingest() -> None:
        nonlocal ingested
        while not stop.is_set():
            with make_session_factory(scratch_engine).begin() as session:
                rows = [
                    {"service_name": "live", "status": "healthy", "created_at": NOW}
                    for _ in range(20)
                ]
                ingested += record_checks(session, rows)

    worker = threading.Thread(target=ingest)
    worker.start()
    try:
        # Every batch commits on its own: the ingest above is never blocked for long.
        result = face_kind.purge_expired(engine, batch_size=200, now=NOW)
    finally:
        stop.set()
        worker.join()
    assert (result.health_checks, result.alerts) == (3000, 1)
    assert ingested > 0
    with face_kind.begin(engine) as face:
        live = face.scalar(select(func.count()).where(ServiceHealthCheck.service_name == "live"))
        assert live == ingested
        assert sorted(set(checks_left(face))) == [NOW - 30 * DAY, NOW]
        assert alerts_left(face) == seeded["kept_alerts"]


def test_a_purge_skips_the_rows_another_purge_holds(
    face_kind: FaceKind, scratch_engine: Engine
) -> None:
    """Two purges at once: the second deletes what the first has not locked and returns, rather
    than queueing behind the first's open transaction; its lock_timeout turns a wait into an
    error instead of a hang."""
    cutoff = NOW - 30 * DAY

    def checks(count: int, created_at: datetime) -> list[dict[str, object]]:
        return [{"service_name": "api", "status": "down", "created_at": created_at}] * count

    factory = make_session_factory(scratch_engine)
    with factory.begin() as session:
        record_checks(
            session, [*checks(5, cutoff - 10 * DAY), *checks(7, cutoff - DAY), *checks(3, NOW)]
        )
    with factory() as holder:
        # A purge with a longer retention deletes, and so locks, the oldest rows; its
        # transaction stays open while the second purge runs.
        first = purge_expired(holder, older_than=35 * DAY, now=NOW)
        assert first.health_checks == 5
        engine = face_kind.engine(
            scratch_engine.url, connect_args={"options": "-c lock_timeout=2s"}
        )
        second = face_kind.purge_expired(engine, now=NOW)
        assert second.health_checks == 7
        holder.commit()
    with face_kind.begin(engine) as face:
        assert checks_left(face) == [NOW] * 3
