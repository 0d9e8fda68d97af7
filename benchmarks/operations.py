"""The dashboard operations: each through the public API and a baseline, on the data set.

Baselines are the straightforward alternatives the API must beat or match: the raw-row
(``exact=True``) aggregates, ``DISTINCT ON`` for the latest status, the same SELECT sent by raw
psycopg for the point queries, and one unbatched DELETE for retention.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.measure import median_ms, plan_summary
from cim_monitoring import (
    active_alerts,
    check_history,
    latest_status,
    purge_expired,
    service_stats,
    status_series,
)
from workbench.fleet import Dataset
from workbench.plans import StatementLog

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Row:
    operation: str
    median_ms: float
    baseline_ms: float
    target: str
    met: bool
    plan: str

    @property
    def ratio(self) -> float:
        """Baseline time over API time: above 1 the API is faster (for ingest: its share of
        the baseline's throughput)."""
        return self.baseline_ms / self.median_ms


@dataclass(frozen=True)
class Query:
    name: str
    api: Callable[[Session], object]
    # None: the API's slowest statement sent through the bare driver (what the layers cost).
    baseline: Callable[[Session], object] | None
    limit_ms: float


_DISTINCT_ON = text(
    "SELECT DISTINCT ON (service_name) service_name, status, latency_ms, created_at "
    "FROM service_health_checks ORDER BY service_name, created_at DESC, id DESC"
)


def queries(data: Dataset) -> list[Query]:
    end, service = data.end, "svc-07"
    day, month = {"start": end - DAY, "end": end}, {"start": data.start, "end": end}
    week = {"start": end - 7 * DAY, "end": end, "bucket": HOUR}
    return [
        Query("latest_status", latest_status, lambda s: s.execute(_DISTINCT_ON).all(), 5),
        Query(
            "service_stats 24 h",
            lambda s: service_stats(s, **day),
            lambda s: service_stats(s, **day, exact=True),
            40,
        ),
        Query(
            f"service_stats {data.days:.0f} d",
            lambda s: service_stats(s, **month),
            lambda s: service_stats(s, **month, exact=True),
            50,
        ),
        Query(
            "status_series 7 d hourly",
            lambda s: status_series(s, service, **week),
            lambda s: status_series(s, service, **week, exact=True),
            10,
        ),
        Query(
            "check_history 1 h, 100",
            lambda s: check_history(s, service, start=end - HOUR, end=end, limit=100),
            None,
            2,
        ),
        Query("active_alerts", active_alerts, None, 1),
    ]


def run_query(engine: Engine, factory: sessionmaker[Session], query: Query, repeat: int) -> Row:
    def api() -> object:
        with factory() as session:
            return query.api(session)

    log = StatementLog()
    with log.capture(engine):
        api()  # warm-up, and the statements to explain
    slowest = log.slowest
    if query.baseline is None:

        def baseline() -> object:
            with engine.connect() as connection:
                cursor = connection.connection.driver_connection.cursor()
                return cursor.execute(slowest.sql, slowest.params or None).fetchall()

    else:
        chosen = query.baseline

        def baseline() -> object:
            with factory() as session:
                return chosen(session)

    baseline()
    median = median_ms(api, repeat)
    return Row(
        query.name,
        median,
        median_ms(baseline, 3),  # some baselines take seconds: three runs
        f"<= {query.limit_ms:g} ms",
        median <= query.limit_ms,
        plan_summary(engine, slowest),
    )


def run_purge(engine: Engine, factory: sessionmaker[Session], data: Dataset, repeat: int) -> Row:
    """Purge the oldest day (rolled back each time) against one unbatched DELETE of it."""
    older_than = data.end - data.start - DAY
    cutoff = data.start + DAY
    totals, slowest = [], []
    for _ in range(repeat):
        log = StatementLog()
        with log.capture(engine), factory() as session:
            totals.append(
                median_ms(lambda: purge_expired(session, older_than=older_than, now=data.end), 1)
            )
            session.rollback()
        slowest.append(log.slowest)
    single = text("DELETE FROM service_health_checks WHERE created_at < :cutoff")

    def baseline() -> None:
        with factory() as session:
            session.execute(single, {"cutoff": cutoff})
            session.rollback()

    worst = max(slowest, key=lambda statement: statement.ms)
    median = sorted(totals)[len(totals) // 2]
    return Row(
        "purge_expired 1 d",
        median,
        median_ms(baseline, repeat),
        "<= 1000 ms, statement <= 250 ms",
        median <= 1000 and worst.ms <= 250,
        f"slowest statement {worst.ms:.0f} ms: {plan_summary(engine, worst)}",
    )
