"""The dashboard operations: each through the public API and a baseline, on the data set.

Baselines are the straightforward alternatives the API must beat or match: the raw-row
(``exact=True``) aggregates, ``DISTINCT ON`` for the latest status, the same SELECT sent by raw
psycopg for the point queries, and one unbatched DELETE for retention.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.measure import driver, median_ms, plan_summary
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
    met: bool | None  # None: no target at this scale
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
    limit_ms: float | None = None
    # The API may take at most this many times as long as the baseline.
    within: float | None = None
    # Some baselines take seconds.
    baseline_repeat: int = 3
    # limit_ms was set on a machine this many times as fast as the one measuring (see
    # benchmarks.fleet: the ratio of a reference measured in the same run).
    scale: float = 1.0

    def target(self, median_ms: float, baseline_ms: float) -> tuple[str, bool | None]:
        """The target as printed, and whether ``median_ms`` met it (None: there is none)."""
        if self.limit_ms is not None:
            limit = self.limit_ms * self.scale
            if self.scale == 1:
                return f"<= {self.limit_ms:g} ms", median_ms <= limit
            return (
                f"<= {self.limit_ms:g} ms x {self.scale:.2f} = {limit:.0f} ms",
                median_ms <= limit,
            )
        if self.within is not None:
            # Printed as the table's ratio reads: baseline over API.
            return f">= {1 / self.within:g}x", median_ms <= self.within * baseline_ms
        return "-", None


_DISTINCT_ON = text(
    "SELECT DISTINCT ON (service_name) service_name, status, latency_ms, created_at "
    "FROM service_health_checks ORDER BY service_name, created_at DESC, id DESC"
)


def stats(
    name: str,
    start: datetime,
    end: datetime,
    *,
    limit_ms: float | None = None,
    baseline_repeat: int = 3,
    scale: float = 1.0,
) -> Query:
    """``service_stats`` of every service over ``[start, end)``, against ``exact=True``."""
    return Query(
        name,
        lambda s: service_stats(s, start=start, end=end),
        lambda s: service_stats(s, start=start, end=end, exact=True),
        limit_ms=limit_ms,
        baseline_repeat=baseline_repeat,
        scale=scale,
    )


def queries(data: Dataset, scale: float) -> list[Query]:
    """``scale``: the machine's speed (``measure.machine_speed``), by which the millisecond
    targets are multiplied."""
    end, service = data.end, "svc-07"
    week = end - 7 * DAY
    return [
        Query(
            "latest_status",
            latest_status,
            lambda s: s.execute(_DISTINCT_ON).all(),
            limit_ms=5,
            scale=scale,
        ),
        stats("service_stats 24 h", end - DAY, end, limit_ms=40, scale=scale),
        stats(f"service_stats {data.days:.0f} d", data.start, end, limit_ms=50, scale=scale),
        Query(
            "status_series 7 d hourly",
            lambda s: status_series(s, service, start=week, end=end, bucket=HOUR),
            lambda s: status_series(s, service, start=week, end=end, bucket=HOUR, exact=True),
            limit_ms=10,
            scale=scale,
        ),
        Query(
            "check_history 1 h, 100",
            lambda s: check_history(s, service, start=end - HOUR, end=end, limit=100),
            None,
            limit_ms=2,
            scale=scale,
        ),
        Query("active_alerts", active_alerts, None, limit_ms=1, scale=scale),
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
                cursor = driver(connection).cursor()
                return cursor.execute(slowest.sql, slowest.params or None).fetchall()

    else:
        chosen = query.baseline

        def baseline() -> object:
            with factory() as session:
                return chosen(session)

    baseline()
    median = median_ms(api, repeat)
    baseline_median = median_ms(baseline, query.baseline_repeat)
    return Row(
        query.name,
        median,
        baseline_median,
        *query.target(median, baseline_median),
        plan_summary(engine, slowest),
    )


def run_purge(
    engine: Engine, factory: sessionmaker[Session], data: Dataset, repeat: int, scale: float
) -> Row:
    """Purge the oldest day (rolled back each time) against one unbatched DELETE of it; the
    millisecond targets multiplied by the machine's ``scale``."""
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
        f"<= {1000 * scale:.0f} ms, statement <= {250 * scale:.0f} ms (1000, 250 x {scale:.2f})",
        median <= 1000 * scale and worst.ms <= 250 * scale,
        f"slowest statement {worst.ms:.0f} ms: {plan_summary(engine, worst)}",
    )
