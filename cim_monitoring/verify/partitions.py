"""Day partitions ahead.

A table of ours that is range-partitioned on one ``timestamptz`` column needs a partition for
each of the next days: rows for a day without one go to the default partition, which the purge
cannot drop by the day (or, without a default partition, fail). A table that is not
partitioned has nothing to create.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Connection, Table, text

from cim_monitoring.verify.schema import Problem

DAYS_AHEAD = 3
CREATE_AHEAD = "run `cim-monitoring migrate` or `cim-monitoring purge` (both create them)"

# A bound of None is MINVALUE (lower) or MAXVALUE (upper).
Bound = datetime | None


def missing_days(ranges: Iterable[tuple[Bound, Bound]], first: date, days: int) -> list[date]:
    """The UTC days in ``[first, first + days)`` that the ranges, taken together, do not cover
    whole (a range is ``[lower, upper)``, as PostgreSQL bounds a range partition)."""
    merged: list[tuple[Bound, Bound]] = []
    for lower, upper in sorted(ranges, key=lambda r: r[0] or datetime.min.replace(tzinfo=UTC)):
        if merged and _at_or_after(merged[-1][1], lower):
            if not _at_or_after(merged[-1][1], upper):
                merged[-1] = (merged[-1][0], upper)
        else:
            merged.append((lower, upper))
    missing = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        start = datetime.combine(day, time(), UTC)
        end = start + timedelta(days=1)
        if not any(
            (lower is None or lower <= start) and (upper is None or upper >= end)
            for lower, upper in merged
        ):
            missing.append(day)
    return missing


def missing(connection: Connection, oid: int, table: Table) -> list[Problem]:
    """One problem naming the days of the next :data:`DAYS_AHEAD` without a partition."""
    key = connection.execute(_DAY_PARTITIONED, {"oid": oid}).one_or_none()
    if key is None:
        return []
    ranges = [(row.lower, row.upper) for row in connection.execute(_RANGES, {"oid": oid})]
    days = missing_days(ranges, key.today, DAYS_AHEAD)
    if not days:
        return []
    listed = ", ".join(day.isoformat() for day in days)
    where = (
        "rows for them go to the default partition"
        if key.has_default
        else "inserts for them fail: there is no default partition"
    )
    return [Problem(f"{table.name} has no partition for {listed} ({where})", CREATE_AHEAD)]


# Range-partitioned on one timestamptz column; today as the server's clock says, in UTC.
_DAY_PARTITIONED = text(
    """
    SELECT p.partdefid <> 0 AS has_default, CAST(now() AT TIME ZONE 'UTC' AS date) AS today
      FROM pg_partitioned_table AS p
      JOIN pg_attribute AS a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
     WHERE p.partrelid = :oid AND p.partstrat = 'r' AND p.partnatts = 1
       AND a.atttypid = CAST('timestamptz' AS regtype)
    """
)
# The bounds of every range partition, read back in this session's own spelling of them.
_RANGES = text(
    """
    WITH bounds AS (
        SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid),
                            '^FOR VALUES FROM \\((.+)\\) TO \\((.+)\\)$') AS m
          FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
         WHERE i.inhparent = :oid
    )
    SELECT CASE WHEN m[1] <> 'MINVALUE' THEN CAST(btrim(m[1], '''') AS timestamptz) END AS lower,
           CASE WHEN m[2] <> 'MAXVALUE' THEN CAST(btrim(m[2], '''') AS timestamptz) END AS upper
      FROM bounds WHERE m IS NOT NULL
    """
)


def _at_or_after(end: Bound, lower: Bound) -> bool:
    """Whether a range ending at ``end`` reaches a range starting at ``lower``."""
    return end is None or (lower is not None and end >= lower)
