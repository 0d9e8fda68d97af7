"""One valid row per monitoring table, as an INSERT, for the access-control tests (plain
PostgreSQL and Supabase alike). A table of ours without one here fails those tests."""

from __future__ import annotations

_ROLLUP_ROW = (
    "(service_name, {time}, healthy, degraded, down, latency_count, latency_sum, "
    "latency_histogram) VALUES ({service}, now(), 1, 0, 0, 0, 0, array_fill(0, ARRAY[106]))"
)
_INSERTS = {
    "service_health_checks": "INSERT INTO service_health_checks (service_name, status) "
    "VALUES ({service}, 'healthy')",
    "alert_events": "INSERT INTO alert_events (service_name, alert_type, severity, message) "
    "VALUES ({service}, 'service_down', 'critical', 'down')",
    "service_health_hourly": "INSERT INTO service_health_hourly "
    + _ROLLUP_ROW.replace("{time}", "hour"),
    "service_health_daily": "INSERT INTO service_health_daily "
    + _ROLLUP_ROW.replace("{time}", "day"),
    "service_health_state": "INSERT INTO service_health_state "
    "(service_name, status, checked_at, check_id) VALUES ({service}, 'healthy', now(), 1)",
    "service_health_changes": "INSERT INTO service_health_changes "
    "(service_name, changed_at, check_id, to_status) VALUES ({service}, now(), 1, 'healthy')",
    "service_health_totals": "INSERT INTO service_health_totals "
    "(service_name, hour, healthy, degraded, down, latency_histogram) "
    "VALUES ({service}, now(), 1, 0, 0, '{{}}')",
}


def insert(table: str, service: str) -> str:
    """An INSERT of one valid row into ``table`` for the service named ``service``."""
    return _INSERTS[table].format(service="'" + service.replace("'", "''") + "'")
