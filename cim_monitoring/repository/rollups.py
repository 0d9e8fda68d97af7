"""Aggregates read from the hourly and daily rollups, with raw rows for the partial edges.

A time range is cut into spans: whole days from ``service_health_daily``, whole hours from
``service_health_hourly``, and the rest (less than an hour at each end) from the raw checks.
Counts, minimum and maximum are exact; the latency histogram of all spans together yields
percentiles within ``histogram.RELATIVE_ERROR`` of the exact ones.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any, NamedTuple
from typing import cast as typed

from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    DateTime,
    Integer,
    Interval,
    Row,
    Select,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, array
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import NullType

from cim_monitoring import histogram
from cim_monitoring.models import (
    LATENCY_BUCKETS,
    ServiceHealthDaily,
    ServiceHealthHourly,
)
from cim_monitoring.repository._common import CHECKS
from cim_monitoring.vocabulary import EPOCH, HEALTH_STATUSES

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
ROLLUPS = {
    DAY: typed(Table, ServiceHealthDaily.__table__),
    HOUR: typed(Table, ServiceHealthHourly.__table__),
}
TIME_COLUMNS = {DAY: "day", HOUR: "hour"}

Span = tuple[timedelta | None, datetime, datetime]
# The bucket width a key may group by (see ``aggregate``).
BUCKET_WIDTH: BindParameter[timedelta] = bindparam("bucket_width", type_=Interval())
_NAMES = ARRAY(Text())
_HISTOGRAM = ARRAY(Integer())
# The rollups' bucket of a raw latency, as the rollup trigger computes it. Not a call of a
# database function: one with a pinned search_path is never inlined, and cost 2-4 us a row.
BOUNDS_SQL = f"'{{{','.join(map(str, histogram.BOUNDS))}}}'::integer[]"
_BOUNDS: ColumnElement[list[int]] = literal_column(BOUNDS_SQL)
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


class Aggregate(NamedTuple):
    """Checks of one group: exact counts and extremes, and the latency histogram. A tuple:
    thousands are built per dashboard, and a frozen dataclass took three times as long."""

    healthy: int
    degraded: int
    down: int
    latency_min: int | None
    latency_max: int | None
    cells: list[int]  # counts of buckets 0, 1, ... (trailing empty ones may be left out)

    @property
    def total(self) -> int:
        return self.healthy + self.degraded + self.down

    def percentile(self, fraction: float) -> int | None:
        (found,) = self.percentiles((fraction,))
        return found

    def percentiles(self, fractions: Sequence[float]) -> list[int | None]:
        """Estimates of the percentiles at ``fractions``."""
        if self.latency_min is None or self.latency_max is None:
            return [None] * len(fractions)
        return histogram.percentiles(
            self.cells, fractions, minimum=self.latency_min, maximum=self.latency_max
        )


def aggregate(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    grains: Sequence[timedelta],
    key: KeyOf,
    services: Sequence[str] | None,
    bucket: timedelta | None = None,
) -> dict[Hashable, Aggregate]:
    """Group the checks of ``services`` (all when None) in ``[start, end)`` by ``key``.

    ``key`` maps a time column (and its table) to the group, e.g. the service name or a chart
    bucket; it must be constant within any bucket of ``grains``. It may refer to
    ``BUCKET_WIDTH``, which is bound to ``bucket``. It is part of the cache key of the
    statement, so it must be a module-level function, not a fresh lambda per call.
    """
    covered = spans(start, end, grains)
    if not covered:
        return {}
    query = _statement(tuple(grain for grain, _, _ in covered), key, services is not None)
    values: dict[str, Any] = {BUCKET_WIDTH.key: bucket, "services": services}
    for index, (_, low, high) in enumerate(covered):
        values[f"low_{index}"], values[f"high_{index}"] = low, high
    # all(): iterating the result would fetch row by row.
    return {row.k: _aggregate(row) for row in session.execute(query, values).all()}


def add_pairs(cells: list[int], buckets: Sequence[int], counts: Sequence[int]) -> None:
    """Add sparse (bucket, count) pairs, buckets numbered from 1 as ``width_bucket`` numbers
    them, into ``cells``, extending it as needed."""
    if buckets and (top := max(buckets)) > len(cells):
        cells += [0] * (top - len(cells))
    for bucket, count in zip(buckets, counts, strict=True):
        cells[bucket - 1] += count


def _aggregate(row: Row[Any]) -> Aggregate:
    # The rollups' histograms come summed cell by cell; the raw edges as sparse pairs.
    cells = list(row.histogram) if row.histogram is not None else []
    add_pairs(cells, row.indexes or (), row.counts or ())
    return Aggregate(
        healthy=row.healthy,
        degraded=row.degraded,
        down=row.down,
        latency_min=row.low,
        latency_max=row.high,
        cells=cells,
    )


# Built once per shape of the range (which grains, in which order), key and filtering, with
# every value a bound parameter: building and compiling the union costs several times what
# PostgreSQL needs to run it, and a dashboard sends the same few shapes over and over.
@cache
def _statement(shape: tuple[timedelta | None, ...], key: KeyOf, filtered: bool) -> Select[Any]:
    parts: list[Select[Any]] = []
    for index, grain in enumerate(shape):
        table = CHECKS if grain is None else ROLLUPS[grain]
        time = table.c.created_at if grain is None else table.c[TIME_COLUMNS[grain]]
        where = [time >= _moment(f"low_{index}"), time < _moment(f"high_{index}")]
        if filtered:
            # = ANY(array): one parameter whatever the number of services (an expanding IN
            # would be re-rendered on every call).
            where.append(table.c.service_name == any_(bindparam("services", type_=_NAMES)))
        group = key(time, table).label("k")
        parts += _raw(table, group, where) if grain is None else _rolled(table, group, where)
    rows = union_all(*parts).subquery()
    with_latency = and_(rows.c.bucket.is_not(None), rows.c.n > 0)
    return select(
        rows.c.k,
        *(_sum(rows.c[name]).label(name) for name in HEALTH_STATUSES),
        func.min(rows.c.low).label("low"),
        func.max(rows.c.high).label("high"),
        _array_agg(rows.c.bucket).filter(with_latency).label("indexes"),
        _array_agg(rows.c.n).filter(with_latency).label("counts"),
        # Raw rows only (the edges of a range): no histogram to sum, and 106 aggregates per
        # group over nothing cost more than reading the rows.
        (
            _histogram_sum(rows.c.histogram)
            if any(grain is not None for grain in shape)
            else type_coerce(null(), NullType())
        ).label("histogram"),
    ).group_by(rows.c.k)


def _histogram_sum(histogram: ColumnElement[list[int]]) -> ColumnElement[Any]:
    """The cell-by-cell sum of the histograms of a group (NULL when it has none), as one
    aggregate per cell. Fetching the histograms whole and summing them in Python took three
    to four times as long for all services over a day (115k hourly rows at 5,000 services);
    unnesting them into a row per cell, ten times."""
    # Integer sums: the running state of sum(integer) is a plain int8 (of sum(bigint), a
    # numeric allocated per group); one bucket of one group would need 2^31 checks to overflow.
    cells = [cast(func.sum(histogram[literal_column(str(cell))]), Integer) for cell in _CELLS]
    # Untyped, as _array_agg: psycopg returns the list of ints as it is.
    return type_coerce(case((func.count(histogram) > 0, array(cells))), NullType())


_CELLS = range(1, LATENCY_BUCKETS + 1)


def _array_agg(column: ColumnElement[Any]) -> FunctionElement[Any]:
    # Untyped: psycopg already returns (nested) lists of ints, and SQLAlchemy's ARRAY result
    # processing would copy every one of them again.
    return func.array_agg(column, type_=NullType())


def _moment(name: str) -> BindParameter[datetime]:
    return bindparam(name, type_=DateTime(timezone=True))


def _sum(column: ColumnElement[Any]) -> ColumnElement[int]:
    # sum(bigint) is numeric in PostgreSQL; counts are integers.
    return cast(func.sum(column), BigInteger)


def _raw(
    table: Table, group: ColumnElement[Any], where: list[ColumnElement[bool]]
) -> list[Select[Any]]:
    """Raw checks, grouped by key and histogram bucket (NULL for checks without latency)."""
    latency = table.c.latency_ms
    bucket = func.width_bucket(latency, _BOUNDS, type_=Integer).label("bucket")
    return [
        select(
            group,
            bucket,
            *(func.count().filter(table.c.status == name).label(name) for name in HEALTH_STATUSES),
            func.count(latency).label("n"),
            func.min(latency).label("low"),
            func.max(latency).label("high"),
            cast(null(), _HISTOGRAM).label("histogram"),
        )
        .where(*where)
        .group_by(literal_column("1"), literal_column("2"))
    ]


def _rolled(
    table: Table, group: ColumnElement[Any], where: list[ColumnElement[bool]]
) -> list[Select[Any]]:
    """Rollup rows, grouped by key: their counts, extremes and histograms summed (bucket
    NULL). Summed here, next to the scan, rather than after the union: carrying every
    histogram through it made the final aggregate several times slower (and spill to disk)."""
    return [
        select(
            group,
            cast(null(), Integer).label("bucket"),
            *(_sum(table.c[name]).label(name) for name in HEALTH_STATUSES),
            literal(0, BigInteger).label("n"),
            func.min(table.c.latency_min).label("low"),
            func.max(table.c.latency_max).label("high"),
            type_coerce(_histogram_sum(table.c.latency_histogram), _HISTOGRAM).label("histogram"),
        )
        .where(*where)
        .group_by(literal_column("1"))
    ]
