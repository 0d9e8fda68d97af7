"""Per-service aggregates of a time range whose cost does not grow with its length.

``service_health_totals`` holds, per service and UTC hour, the running counts and latency
histogram of the service's checks up to the end of that hour, one row for every hourly rollup.
The checks of the whole hours ``[low, high)`` of a range are the service's last row before
``high`` minus its last row before ``low``: two index probes per service whether the range is a
day or a month (summing the hourly histograms instead cost PostgreSQL 2-3 us a row, and a day
of 5,000 services is 115k rows). Without a row before ``low`` (a new service, or retention
purged the older rows with their rollups), the base is the service's first row from ``low`` on
minus that hour's rollup. The exact extremes come from the rollups, read narrow, and the
services of the range with them; the partial hours at either end from the raw rows, as
:func:`rollups.aggregate` reads them.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from datetime import datetime
from functools import cache
from operator import add, sub
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Table,
    Text,
    TextClause,
    any_,
    bindparam,
    exists,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from cim_monitoring.repository._common import CHECKS
from cim_monitoring.repository.rollups import (
    BOUNDS_SQL,
    DAY,
    HOUR,
    TIME_COLUMNS,
    Aggregate,
    add_pairs,
    aggregate,
    ceil,
    spans,
)
from cim_monitoring.vocabulary import HEALTH_STATUSES

_ROLLUP_TABLES = {DAY: "service_health_daily", HOUR: "service_health_hourly"}


def by_service(
    session: Session, *, start: datetime, end: datetime, services: Sequence[str] | None
) -> dict[str, Aggregate]:
    """The checks of ``services`` (all when None) in ``[start, end)``, per service with checks
    there: exact counts and extremes, the histogram for percentiles."""
    covered = spans(start, end, (HOUR,))
    whole = [(low, high) for grain, low, high in covered if grain is not None]
    if not whole:
        return _named(
            aggregate(session, start=start, end=end, grains=(HOUR,), key=by_name, services=services)
        )
    ((low, high),) = whole
    edges = [(edge_low, edge_high) for grain, edge_low, edge_high in covered if grain is None]
    high_hour = _hour_before(high)
    names = list(services) if services is not None else None
    day_after = _day_after(end)
    if day_after is not None and not _checked_later(session, end, day_after, names):
        # Nothing from end to the end of its day (a dashboard's window ending now): the checks
        # of [low, end) are those of [low, day_after). That whole part's newest totals row is
        # most often of the hour holding end, its extremes come from end's daily rollup instead
        # of the day's hours, and the raw rows of end's partial hour are not read.
        high, high_hour = day_after, _hour_before(ceil(end, HOUR))
        edges = [(edge_low, edge_high) for edge_low, edge_high in edges if edge_high <= low]
    inner = spans(low, high, (DAY, HOUR))
    values: dict[str, Any] = {
        "low": low,
        "high": high,
        "low_hour": _hour_before(low),
        "high_hour": high_hour,
        "services": names,
    }
    for index, (_, span_low, span_high) in enumerate(inner):
        values[f"low_{index}"], values[f"high_{index}"] = span_low, span_high
    for index, (edge_low, edge_high) in enumerate(edges):
        values[f"edge_low_{index}"], values[f"edge_high_{index}"] = edge_low, edge_high
    statement = _statement(
        tuple(grain for grain, _, _ in inner), len(edges), filtered=services is not None
    )
    # all(): iterating the result would fetch row by row.
    return {row[0]: _window(row) for row in session.execute(statement, values).all()}


_IN_REST_OF_DAY = (
    CHECKS.c.created_at >= bindparam("end"),
    CHECKS.c.created_at < bindparam("day_after"),
)
_CHECKED_LATER = select(exists().where(*_IN_REST_OF_DAY))
_CHECKED_LATER_OF = select(
    exists().where(
        *_IN_REST_OF_DAY,
        CHECKS.c.service_name == any_(bindparam("services", type_=ARRAY(Text()))),
    )
)


def _checked_later(
    session: Session, end: datetime, day_after: datetime, services: list[str] | None
) -> bool:
    """Whether any check (of ``services``) lies in ``[end, day_after)``: one descent of the
    time index of end's day."""
    values: dict[str, Any] = {"end": end, "day_after": day_after}
    if services is None:
        return bool(session.execute(_CHECKED_LATER, values).scalar_one())
    return bool(session.execute(_CHECKED_LATER_OF, values | {"services": services}).scalar_one())


def _day_after(moment: datetime) -> datetime | None:
    """The first midnight from ``moment`` on; None past the calendar's end."""
    try:
        return ceil(moment, DAY)
    except OverflowError:
        return None


def _hour_before(moment: datetime) -> datetime | None:
    """The hour before ``moment``; None (no row is of that hour: probe) at the calendar's
    start."""
    try:
        return moment - HOUR
    except OverflowError:
        return None


def by_name(_: ColumnElement[datetime], table: Table) -> ColumnElement[Any]:
    """The key of :func:`rollups.aggregate` that groups by service."""
    return table.c.service_name


def _named(groups: dict[Hashable, Aggregate]) -> dict[str, Aggregate]:
    return {str(name): group for name, group in groups.items()}


# One part per span of the rollups: each service's extremes there, and with them the services
# that had checks in the whole hours.
_EXTREMES = """
    SELECT service_name, min(latency_min) AS low, max(latency_max) AS high
      FROM {table}
     WHERE {column} >= :low_{index} AND {column} < :high_{index} {named}
     GROUP BY service_name
"""
# One part per partial hour at either end: its raw checks per service and latency bucket (as
# the rollup trigger numbers them, from 1; NULL without a latency).
_EDGE = """
    SELECT service_name, width_bucket(latency_ms, {bounds}) AS bucket,
           count(*) FILTER (WHERE status = '{healthy}') AS healthy,
           count(*) FILTER (WHERE status = '{degraded}') AS degraded,
           count(*) FILTER (WHERE status = '{down}') AS down,
           count(latency_ms) AS n, min(latency_ms) AS low, max(latency_ms) AS high
      FROM service_health_checks
     WHERE created_at >= :edge_low_{index} AND created_at < :edge_high_{index} {named}
     GROUP BY 1, 2
"""
# The edges per service: counts and extremes, the histogram as (bucket, count) pairs.
_EDGES = """
    SELECT service_name, CAST(sum(healthy) AS bigint) AS healthy,
           CAST(sum(degraded) AS bigint) AS degraded, CAST(sum(down) AS bigint) AS down,
           min(low) AS low, max(high) AS high,
           array_agg(bucket) FILTER (WHERE n > 0) AS buckets,
           array_agg(n) FILTER (WHERE n > 0) AS counts
      FROM ({parts}) AS parts
     GROUP BY service_name
"""
# The whole hours per service. The rows before ``low`` and ``high`` are nearly always those of
# the hour just before, which the hour index finds for all services in one range (one heap
# page per few dozen services: the trigger writes an hour's rows together); only the services
# without one are probed for their last row before (60 ms for 5,000 services when every one
# was probed). Without a row before ``low``, the first one from ``low`` on is the one at
# ``low`` itself, read the same way, or probed.
_WHOLE = """
    SELECT e.service_name, e.low, e.high,
           coalesce(hi_hour.healthy, hi.healthy)
               - coalesce(lo_hour.healthy, lo.healthy, first.healthy, 0) AS healthy,
           coalesce(hi_hour.degraded, hi.degraded)
               - coalesce(lo_hour.degraded, lo.degraded, first.degraded, 0) AS degraded,
           coalesce(hi_hour.down, hi.down)
               - coalesce(lo_hour.down, lo.down, first.down, 0) AS down,
           coalesce(hi_hour.latency_histogram, hi.latency_histogram) AS high_cells,
           coalesce(lo_hour.latency_histogram, lo.latency_histogram,
                    first.latency_histogram) AS low_cells,
           first.own AS own_cells
      FROM extremes AS e
      LEFT JOIN service_health_totals AS hi_hour
        ON hi_hour.service_name = e.service_name AND hi_hour.hour = :high_hour
      LEFT JOIN service_health_totals AS lo_hour
        ON lo_hour.service_name = e.service_name AND lo_hour.hour = :low_hour
      LEFT JOIN service_health_totals AS at_low
        ON at_low.service_name = e.service_name AND at_low.hour = :low
      LEFT JOIN service_health_hourly AS rollup_at_low
        ON rollup_at_low.service_name = e.service_name AND rollup_at_low.hour = :low
      {last_before_high}
      {last_before_low}
      LEFT JOIN LATERAL (
            SELECT at_low.healthy - rollup_at_low.healthy AS healthy,
                   at_low.degraded - rollup_at_low.degraded AS degraded,
                   at_low.down - rollup_at_low.down AS down, at_low.latency_histogram,
                   rollup_at_low.latency_histogram AS own
             WHERE lo_hour.service_name IS NULL AND lo.healthy IS NULL
               AND at_low.service_name IS NOT NULL
            UNION ALL
            (SELECT t.healthy - r.healthy, t.degraded - r.degraded, t.down - r.down,
                    t.latency_histogram, r.latency_histogram
               FROM service_health_totals AS t
               JOIN service_health_hourly AS r
                 ON r.service_name = t.service_name AND r.hour = t.hour
              WHERE lo_hour.service_name IS NULL AND lo.healthy IS NULL
                AND at_low.service_name IS NULL
                AND t.service_name = e.service_name AND t.hour >= :low
              ORDER BY t.hour
              LIMIT 1)
      ) AS first ON true
"""
# A service's last row before ``bound``, probed only when the row of the hour before (the
# join ``found``) is missing.
_LAST_BEFORE = """
      LEFT JOIN LATERAL (
            SELECT t.healthy, t.degraded, t.down, t.latency_histogram
              FROM service_health_totals AS t
             WHERE {found}.service_name IS NULL
               AND t.service_name = e.service_name AND t.hour < :{bound}
             ORDER BY t.hour DESC
             LIMIT 1
      ) AS {alias} ON true
"""
# Whole hours and edges together, for services with checks in either. The histograms come as
# bigint[] (psycopg loads them in C); Python subtracts and adds them.
_EXTREMES_BY_SERVICE = """
    extremes AS (
        SELECT service_name, min(low) AS low, max(high) AS high
          FROM ({parts}) AS parts
         GROUP BY service_name
    )
"""
_WINDOW = """
    WITH {extremes},
    whole AS ({whole}),
    edges AS ({edges})
    SELECT coalesce(whole.service_name, edges.service_name) AS service_name,
           least(whole.low, edges.low) AS low, greatest(whole.high, edges.high) AS high,
           coalesce(whole.healthy, 0) + coalesce(edges.healthy, 0) AS healthy,
           coalesce(whole.degraded, 0) + coalesce(edges.degraded, 0) AS degraded,
           coalesce(whole.down, 0) + coalesce(edges.down, 0) AS down,
           whole.high_cells, whole.low_cells, whole.own_cells, edges.buckets, edges.counts
      FROM whole FULL JOIN edges ON edges.service_name = whole.service_name
"""
_WINDOW_WITHOUT_EDGES = """
    WITH {extremes}
    SELECT whole.*, NULL AS buckets, NULL AS counts FROM ({whole}) AS whole
"""
_STATUSES = dict(zip(("healthy", "degraded", "down"), HEALTH_STATUSES, strict=True))
_NAMED = "AND service_name = ANY (CAST(:services AS text[]))"


# Built once per shape of the whole hours (days and hours, in which order), number of edges and
# filtering.
@cache
def _statement(shape: tuple[Any, ...], edges: int, *, filtered: bool) -> TextClause:
    named = _NAMED if filtered else ""
    extremes = _EXTREMES_BY_SERVICE.format(
        parts=" UNION ALL ".join(
            _EXTREMES.format(
                table=_ROLLUP_TABLES[grain], column=TIME_COLUMNS[grain], index=index, named=named
            )
            for index, grain in enumerate(shape)
        )
    )
    whole = _WHOLE.format(
        last_before_high=_LAST_BEFORE.format(found="hi_hour", bound="high", alias="hi"),
        last_before_low=_LAST_BEFORE.format(found="lo_hour", bound="low", alias="lo"),
    )
    if not edges:
        return text(_WINDOW_WITHOUT_EDGES.format(extremes=extremes, whole=whole))
    edge_parts = " UNION ALL ".join(
        _EDGE.format(index=index, named=named, bounds=BOUNDS_SQL, **_STATUSES)
        for index in range(edges)
    )
    return text(
        _WINDOW.format(extremes=extremes, whole=whole, edges=_EDGES.format(parts=edge_parts))
    )


def _window(row: Row[Any]) -> Aggregate:
    """A service's checks: those of the whole hours (the totals' difference, plus the first
    hour's rollup when the base is the first row from ``low`` on) and of the edges."""
    _, low, high, healthy, degraded, down, cells, base, own, buckets, counts = tuple(row)
    if cells is None:
        cells = []
    elif base:
        # A running total only grows: the earlier one is never the longer.
        cells = list(map(sub, cells, base + [0] * (len(cells) - len(base))))
    if own:
        cells = _plus(cells, own)
    if buckets:
        add_pairs(cells, buckets, counts)
    return Aggregate(healthy, degraded, down, low, high, cells)


def _plus(cells: list[int], more: list[int]) -> list[int]:
    """``cells`` and ``more`` added cell by cell."""
    if len(more) > len(cells):
        cells, more = more, cells
    return list(map(add, cells, more + [0] * (len(cells) - len(more))))
