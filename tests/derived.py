"""What the insert trigger derives from the raw checks, read back, and the same recomputed
straight from ``service_health_checks`` by the definitions: the newest check per service, and
every check whose status differs from the previous one of its service by ``(created_at, id)``."""

from __future__ import annotations

from sqlalchemy import text

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
