"""Concurrency under load: bulk writers, repeated purges and racing alert lifecycles at once.

8 writer threads x 25 000 checks (record_checks in batches, a session of their own each) while
purge_expired(engine) runs in a loop and three threads raise, acknowledge and resolve alerts on
a handful of (service, type) pairs, with a watcher looking for two open alerts of one pair.
Afterwards the counts must be exact, no thread may have raised, and dedup must have held.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from derived import (
    CHANGES_AFTER_OLDEST,
    CHANGES_AFTER_OLDEST_REFERENCE,
    STATE,
    STATE_REFERENCE,
)
from sqlalchemy import Engine, text

from cim_monitoring import (
    InvalidTransition,
    acknowledge_alert,
    make_engine,
    make_session_factory,
    migrations,
    purge_expired,
    raise_alert,
    record_checks,
    resolve_alert,
)

if TYPE_CHECKING:
    from conftest import PostgresServer

WRITERS = 8
PER_WRITER = 25_000
BATCH = 2_500
# Of each writer's checks: these are 40 days old (purged), those 29 days old (kept).
EXPIRED = 2_500
NEARLY_EXPIRED = 1_000
ALERTERS = 3
PAIRS = [(f"svc-{s}", f"type_{t}") for s in range(3) for t in range(2)]
DUPLICATE_OPEN = text(
    "SELECT service_name, alert_type, count(*) FROM alert_events "
    "WHERE status <> 'resolved' GROUP BY 1, 2 HAVING count(*) > 1"
)


@pytest.fixture(scope="module")
def busy_engine(pg_server: PostgresServer) -> Iterator[Engine]:

    engine = make_engine(pg_server.create_database(), pool_size=16, max_overflow=4)
    with engine.begin() as connection:
        migrations.upgrade(connection)
    yield engine
    engine.dispose()


def writer_rows(writer: int, now: datetime) -> Iterator[dict[str, Any]]:
    old, nearly = now - timedelta(days=40), now - timedelta(days=29)
    for i in range(PER_WRITER):
        created_at = old if i < EXPIRED else nearly if i < EXPIRED + NEARLY_EXPIRED else None
        yield {
            "service_name": f"writer-{writer}",
            "status": ("healthy", "degraded", "down")[i % 3],
            "latency_ms": i,
            "created_at": created_at,
        }


def test_writers_purges_and_alerts_at_once(busy_engine: Engine) -> None:
    factory = make_session_factory(busy_engine)
    with busy_engine.connect() as connection:
        now = connection.execute(text("SELECT now()")).scalar_one().astimezone(UTC)
    errors: list[BaseException] = []
    writers_done = threading.Event()
    purged = {"health_checks": 0, "alerts": 0, "runs": 0}
    raises = {"count": 0}
    lock = threading.Lock()
    duplicates_seen: list[Any] = []

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as exc:
                errors.append(exc)

        return run

    def writer(index: int) -> Callable[[], None]:
        def work() -> None:
            rows = list(writer_rows(index, now))
            random.Random(index).shuffle(rows)  # old rows arrive throughout the run
            for start in range(0, PER_WRITER, BATCH):
                with factory.begin() as session:
                    assert record_checks(session, rows[start : start + BATCH]) == BATCH

        return work

    def purger() -> None:
        while True:
            finished = writers_done.is_set()
            result = purge_expired(busy_engine, batch_size=1_000)
            with lock:
                purged["health_checks"] += result.health_checks
                purged["alerts"] += result.alerts
                purged["runs"] += 1
            if finished:
                return

    def alerter(seed: int) -> Callable[[], None]:
        def work() -> None:
            rng = random.Random(seed)
            while not writers_done.is_set():
                service, alert_type = rng.choice(PAIRS)
                with factory.begin() as session:
                    alert = raise_alert(
                        session,
                        {
                            "service_name": service,
                            "alert_type": alert_type,
                            "severity": rng.choice(["info", "warning", "critical"]),
                            "message": "flapping",
                        },
                    )
                with lock:
                    raises["count"] += 1
                action = rng.choice([acknowledge_alert, resolve_alert, None])
                if action is None:
                    continue
                try:
                    with factory.begin() as session:
                        action(session, alert.id, by=f"alerter-{seed}")
                except InvalidTransition:
                    pass  # another alerter got there first: exactly one wins

        return work

    def watcher() -> None:
        while not writers_done.is_set():
            with busy_engine.connect() as connection:
                duplicates_seen.extend(connection.execute(DUPLICATE_OPEN).all())

    writer_threads = [threading.Thread(target=guarded(writer(i))) for i in range(WRITERS)]
    others = [
        threading.Thread(target=guarded(purger)),
        threading.Thread(target=guarded(watcher)),
        *(threading.Thread(target=guarded(alerter(seed))) for seed in range(ALERTERS)),
    ]
    for thread in writer_threads + others:
        thread.start()
    for thread in writer_threads:
        thread.join(timeout=120)
    writers_done.set()
    for thread in others:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in writer_threads + others), "a thread hung (deadlock?)"
    assert errors == []

    with busy_engine.connect() as connection:
        by_age: dict[bool, int] = dict(
            connection.execute(
                text("SELECT created_at < :cutoff, count(*) FROM service_health_checks GROUP BY 1"),
                {"cutoff": now - timedelta(days=30)},
            ).all()
        )
        assert by_age == {False: WRITERS * (PER_WRITER - EXPIRED)}
        assert purged["health_checks"] == WRITERS * EXPIRED
        # Shuffled rows make most batches backfills, merged while purges delete under them:
        # the state is still each writer's newest check, and the changes after the oldest
        # check left are exactly those of the rows left (before it, purged rows had a say).
        assert connection.execute(STATE).all() == connection.execute(STATE_REFERENCE).all()
        assert (
            connection.execute(CHANGES_AFTER_OLDEST).all()
            == connection.execute(CHANGES_AFTER_OLDEST_REFERENCE).all()
        )
        assert purged["runs"] >= 2
        assert duplicates_seen == []
        assert connection.execute(DUPLICATE_OPEN).all() == []
        # Dedup lost no raise: each one is either a new alert or an occurrence of one.
        occurrences = connection.execute(
            text("SELECT coalesce(sum(occurrence_count), 0) FROM alert_events")
        ).scalar_one()
        assert purged["alerts"] == 0  # resolved just now: none is past retention
        assert occurrences == raises["count"] > 0
        # The protection itself: the partial unique index is there and valid.
        index = connection.execute(
            text(
                "SELECT pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
                "WHERE i.indrelid = 'alert_events'::regclass AND i.indisunique "
                "AND i.indpred IS NOT NULL"
            )
        ).one()
        assert "(service_name, alert_type)" in index[0]
        assert "<> 'resolved'" in index[0]
        assert index[1] is True
