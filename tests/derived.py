"""What the insert trigger derives from the raw checks, read back, and the same recomputed
straight from ``service_health_checks`` by the definitions: the newest check per service, and
every check whose status differs from the previous one of its service by ``(created_at, id)``,
the running totals of every service by hour."""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from cim_monitoring.histogram import BOUNDS
from cim_monitoring.vocabulary import HEALTH_STATUSES

STATE = text(
    "SELECT service_name, status, latency_ms, checked_at, check_id "
    "FROM service_health_state ORDER BY service_name"
)
STATE_REFERENCE = text(
    "SELECT DISTINCT ON (service_name) service_name, status, latency_ms, created_at, id "
    "FROM service_health_checks ORDER BY service_name, created_at DESC, id DESC"
)
CHANGES = text(
    "SELECT service_name, changed_at, check_id, from_status, to_status "
    "FROM service_health_changes ORDER BY 1, 2, 3"
)
_LAGGED = """
    SELECT service_name, created_at, id, previous, status
      FROM (SELECT service_name, created_at, id, status,
                   lag(status) OVER (PARTITION BY service_name ORDER BY created_at, id)
                       AS previous
              FROM service_health_checks) AS checks
     WHERE previous IS DISTINCT FROM status {also}
     ORDER BY 1, 2, 3
"""
CHANGES_REFERENCE = text(_LAGGED.format(also=""))

# Once retention has purged a service's oldest checks, the change at its oldest check left
# depends on a check that is gone: only the changes after it follow from the rows left.
_OLDEST_LEFT = (
    "(SELECT created_at, id FROM service_health_checks AS o "
    "WHERE o.service_name = c.service_name ORDER BY created_at, id LIMIT 1)"
)
CHANGES_AFTER_OLDEST = text(
    "SELECT service_name, changed_at, check_id, from_status, to_status "
    f"FROM service_health_changes AS c WHERE ROW(changed_at, check_id) > {_OLDEST_LEFT} "
    "ORDER BY 1, 2, 3"
)
CHANGES_AFTER_OLDEST_REFERENCE = text(_LAGGED.format(also="AND previous IS NOT NULL"))

TOTALS = text(
    "SELECT service_name, hour, healthy, degraded, down, latency_histogram "
    "FROM service_health_totals ORDER BY 1, 2"
)
_CHECKS_IN_ORDER = text(
    "SELECT service_name, created_at, status, latency_ms FROM service_health_checks "
    "ORDER BY service_name, created_at"
)


def totals_reference(bind: Session | Connection) -> list[tuple[Any, ...]]:
    """The running totals by the definition, in Python: per service and UTC hour with checks,
    the counts by status and the latency histogram (without trailing empty buckets) of all its
    checks up to the end of that hour."""
    found: list[tuple[Any, ...]] = []
    service: str | None = None
    counts: dict[str, int] = {}
    cells: list[int] = []
    for name, created_at, status, latency in bind.execute(_CHECKS_IN_ORDER):
        hour = created_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        if name != service:
            service, counts, cells = name, dict.fromkeys(HEALTH_STATUSES, 0), []
        elif found[-1][1] == hour:
            found.pop()
        counts[status] += 1
        if latency is not None:
            bucket = bisect_right(BOUNDS, latency) - 1
            cells += [0] * (bucket + 1 - len(cells))
            cells[bucket] += 1
        found.append((name, hour, *counts.values(), list(cells)))
    return found
