"""Aggregates read from the hourly and daily rollups, with raw rows for the partial edges.

A time range is cut into spans: whole days from ``service_health_daily``, whole hours from
``service_health_hourly``, and the rest (less than an hour at each end) from the raw checks.
Counts, minimum and maximum are exact; the latency histogram of all spans together yields
percentiles within ``histogram.RELATIVE_ERROR`` of the exact ones.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from typing import cast as typed

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    Table,
    and_,
    cast,
    func,
    literal,
    literal_column,
    null,
    select,
    true,
    union_all,
)
from sqlalchemy.orm import Session

from cim_monitoring import histogram
from cim_monitoring.models import HEALTH_STATUSES, ServiceHealthDaily, ServiceHealthHourly
from cim_monitoring.repository._common import CHECKS

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Buckets are aligned to the Unix epoch, so the same bucket size always yields the same edges
# (and whole UTC hours and days line up with the rollups).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ROLLUPS = {
    DAY: typed(Table, ServiceHealthDaily.__table__),
    HOUR: typed(Table, ServiceHealthHourly.__table__),
}
TIME_COLUMNS = {DAY: "day", HOUR: "hour"}

Span = tuple[timedelta | None, datetime, datetime]
KeyOf = Callable[[ColumnElement[datetime], Table], ColumnElement[Any]]


def floor(moment: datetime, grain: timedelta) -> datetime:
    return moment - (moment - EPOCH) % grain


def ceil(moment: datetime, grain: timedelta) -> datetime:
    return -((EPOCH - moment) // grain) * grain + EPOCH


def spans(start: datetime, end: datetime, grains: Sequence[timedelta]) -> list[Span]:
    """Cover ``[start, end)`` with whole buckets of the coarsest grain that fits, then finer
    ones towards the edges; ``None`` marks what only raw rows can answer."""
    if start >= end:
        return []
    if not grains:
        return [(None, start, end)]
    grain, finer = grains[0], grains[1:]
    low, high = ceil(start, grain), floor(end, grain)
    if low >= high:
        return spans(start, end, finer)
    return [*spans(start, low, finer), (grain, low, high), *spans(high, end, finer)]


@dataclass(frozen=True)
class Aggregate:
    """Checks of one group: exact counts and extremes, and the latency histogram."""

    healthy: int
    degraded: int
    down: int
    latency_min: int | None
    latency_max: int | None
    buckets: dict[int, int]  # bucket index (0-based) -> count

    @property
    def total(self) -> int:
        return self.healthy + self.degraded + self.down

    def percentile(self, fraction: float) -> int | None:
        if self.latency_min is None or self.latency_max is None:
            return None
        return histogram.percentile(
            self.buckets, fraction, minimum=self.latency_min, maximum=self.latency_max
        )


def aggregate(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    grains: Sequence[timedelta],
    key: KeyOf,
    services: Sequence[str] | None,
) -> dict[Hashable, Aggregate]:
    """Group the checks of ``services`` (all when None) in ``[start, end)`` by ``key``.

    ``key`` maps a time column (and its table) to the group, e.g. the service name or a chart
    bucket; it must be constant within any bucket of ``grains``.
    """
    parts: list[Select[Any]] = []
    for grain, low, high in spans(start, end, grains):
        table = CHECKS if grain is None else ROLLUPS[grain]
        time = table.c.created_at if grain is None else table.c[TIME_COLUMNS[grain]]
        where = [time >= low, time < high]
        if services is not None:
            where.append(table.c.service_name.in_(services))
        group = key(time, table).label("k")
        parts += _raw(table, group, where) if grain is None else _rolled(table, group, where)
    if not parts:
        return {}
    rows = union_all(*parts).subquery()
    by_bucket = (
        select(
            rows.c.k,
            rows.c.bucket,
            *(_sum(rows.c[name]).label(name) for name in (*HEALTH_STATUSES, "n")),
            func.min(rows.c.low).label("low"),
            func.max(rows.c.high).label("high"),
        )
        .group_by(rows.c.k, rows.c.bucket)
        .subquery()
    )
    with_latency = and_(by_bucket.c.bucket.is_not(None), by_bucket.c.n > 0)
    query = select(
        by_bucket.c.k,
        *(_sum(by_bucket.c[name]).label(name) for name in HEALTH_STATUSES),
        func.min(by_bucket.c.low).label("low"),
        func.max(by_bucket.c.high).label("high"),
        func.array_agg(by_bucket.c.bucket).filter(with_latency).label("indexes"),
        func.array_agg(by_bucket.c.n).filter(with_latency).label("counts"),
    ).group_by(by_bucket.c.k)
    return {
        row.k: Aggregate(
            healthy=row.healthy,
            degraded=row.degraded,
            down=row.down,
            latency_min=row.low,
            latency_max=row.high,
            # SQL numbers buckets from 1 (width_bucket, WITH ORDINALITY); Python from 0.
            buckets={i - 1: n for i, n in zip(row.indexes or (), row.counts or (), strict=True)},
        )
        for row in session.execute(query)
    }


def _sum(column: ColumnElement[Any]) -> ColumnElement[int]:
    # sum(bigint) is numeric in PostgreSQL; counts are integers.
    return cast(func.sum(column), BigInteger)


def _raw(
    table: Table, group: ColumnElement[Any], where: list[ColumnElement[bool]]
) -> list[Select[Any]]:
    """Raw checks, grouped by key and histogram bucket (NULL for checks without latency)."""
    latency = table.c.latency_ms
    bucket = func.service_health_latency_bucket(latency, type_=Integer).label("bucket")
    return [
        select(
            group,
            bucket,
            *(func.count().filter(table.c.status == name).label(name) for name in HEALTH_STATUSES),
            func.count(latency).label("n"),
            func.min(latency).label("low"),
            func.max(latency).label("high"),
        )
        .where(*where)
        .group_by(literal_column("1"), literal_column("2"))
    ]


def _rolled(
    table: Table, group: ColumnElement[Any], where: list[ColumnElement[bool]]
) -> list[Select[Any]]:
    """Rollup rows: their counts once (bucket NULL), and their non-empty histogram buckets."""
    zero, none = literal(0, Integer), cast(null(), Integer)
    counts = select(
        group,
        none.label("bucket"),
        *(table.c[name].label(name) for name in HEALTH_STATUSES),
        zero.label("n"),
        table.c.latency_min.label("low"),
        table.c.latency_max.label("high"),
    ).where(*where)
    cells = (
        func.unnest(table.c.latency_histogram)
        .table_valued("n", with_ordinality="i")
        .render_derived(name="cells")
    )
    buckets = (
        select(
            group,
            cells.c.i.label("bucket"),
            *(zero.label(name) for name in HEALTH_STATUSES),
            cells.c.n.label("n"),
            none.label("low"),
            none.label("high"),
        )
        .select_from(table)
        .join(cells, true())
        .where(*where, cells.c.n > 0)
    )
    return [counts, buckets]
