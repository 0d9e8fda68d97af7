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

from collections.abc import Callable, Hashable, Sequence
from datetime import datetime
from functools import cache
from operator import sub
from typing import Any

from sqlalchemy import ColumnElement, Row, Table, TextClause, text
from sqlalchemy.orm import Session

from cim_monitoring.repository.rollups import (
    DAY,
    HOUR,
    TIME_COLUMNS,
    Aggregate,
    aggregate,
    aggregate_spans,
    spans,
)

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
    edges = [span for span in covered if span[0] is None]
    found = _named(aggregate_spans(session, edges, key=by_name, services=services))
    inner = spans(low, high, (DAY, HOUR))
    names = list(services) if services is not None else None
    values: dict[str, Any] = {
        "low": low,
        "high": high,
        "low_hour": _hour_before(low),
        "high_hour": _hour_before(high),
        "services": names,
    }
    for index, (_, span_low, span_high) in enumerate(inner):
        values[f"low_{index}"], values[f"high_{index}"] = span_low, span_high
    statement = _statement(tuple(grain for grain, _, _ in inner), services is not None)
    # all(): iterating the result would fetch row by row.
    for row in session.execute(statement, values).all():
        name = row.service_name
        found[name] = _window(row, found.get(name))
    return found


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
# The rows before ``low`` and ``high`` are nearly always those of the hour just before, which
# the hour index finds for all services in one range (one heap page per few dozen services:
# the trigger writes an hour's rows together); only the services without one are probed for
# their last row before (60 ms for 5,000 services when every one was probed). Without a row
# before ``low``, the first one from ``low`` on is the one at ``low`` itself, read the same
# way, or probed. The text of a bigint[] is parsed in Python: psycopg's array loader took 2.5
# times as long.
_WINDOW = """
    WITH extremes AS (
        SELECT service_name, min(low) AS low, max(high) AS high
          FROM ({parts}) AS parts
         GROUP BY service_name
    )
    SELECT e.service_name, e.low, e.high,
           coalesce(hi_hour.healthy, hi.healthy)
               - coalesce(lo_hour.healthy, lo.healthy, first.healthy, 0) AS healthy,
           coalesce(hi_hour.degraded, hi.degraded)
               - coalesce(lo_hour.degraded, lo.degraded, first.degraded, 0) AS degraded,
           coalesce(hi_hour.down, hi.down)
               - coalesce(lo_hour.down, lo.down, first.down, 0) AS down,
           coalesce(hi_hour.latency_histogram, hi.latency_histogram)::text AS high_cells,
           coalesce(lo_hour.latency_histogram, lo.latency_histogram,
                    first.latency_histogram)::text AS low_cells,
           first.own::text AS own_cells
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


# Built once per shape of the whole hours (days and hours, in which order) and filtering.
@cache
def _statement(shape: tuple[Any, ...], filtered: bool) -> TextClause:
    named = "AND service_name = ANY (CAST(:services AS text[]))" if filtered else ""
    parts = " UNION ALL ".join(
        _EXTREMES.format(
            table=_ROLLUP_TABLES[grain], column=TIME_COLUMNS[grain], index=index, named=named
        )
        for index, grain in enumerate(shape)
    )
    return text(
        _WINDOW.format(
            parts=parts,
            last_before_high=_LAST_BEFORE.format(found="hi_hour", bound="high", alias="hi"),
            last_before_low=_LAST_BEFORE.format(found="lo_hour", bound="low", alias="lo"),
        )
    )


def _cells(array: str | None) -> list[int]:
    if array is None or array == "{}":
        return []
    return list(map(int, array[1:-1].split(",")))


def _window(row: Row[Any], edge: Aggregate | None) -> Aggregate:
    """The service's checks of the whole hours (the totals' difference, plus the first hour's
    rollup when the base is the first row from ``low`` on) and of the ``edge`` hours."""
    _, low, high, healthy, degraded, down, high_cells, low_cells, own_cells = tuple(row)
    cells, base = _cells(high_cells), _cells(low_cells)
    # A running total only grows: the earlier one is never the longer.
    cells = list(map(sub, cells, base + [0] * (len(cells) - len(base))))
    if own_cells is not None:
        _add(cells, _cells(own_cells))
    if edge is None:
        return Aggregate(healthy, degraded, down, low, high, cells)
    _add(cells, edge.cells)
    return Aggregate(
        healthy + edge.healthy,
        degraded + edge.degraded,
        down + edge.down,
        _extreme(min, low, edge.latency_min),
        _extreme(max, high, edge.latency_max),
        cells,
    )


def _add(cells: list[int], more: list[int]) -> None:
    """``more`` added into ``cells``, cell by cell, extending it as needed."""
    if len(more) > len(cells):
        cells += [0] * (len(more) - len(cells))
    for index, count in enumerate(more):
        if count:
            cells[index] += count


def _extreme(pick: Callable[[int, int], int], one: int | None, other: int | None) -> int | None:
    if one is None:
        return other
    return one if other is None else pick(one, other)
