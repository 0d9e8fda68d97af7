"""The repository API: functions that take the caller's ``Session`` first, may flush, and never
commit. Inputs are validated before any SQL; outputs are frozen pydantic models."""

from cim_monitoring.repository.alerts import (
    acknowledge_alert,
    active_alerts,
    alerts_by_id_prefix,
    raise_alert,
    resolve_alert,
    resolve_alerts,
)
from cim_monitoring.repository.checks import record_check, record_checks
from cim_monitoring.repository.dashboard import dashboard
from cim_monitoring.repository.incidents import incidents, status_changes
from cim_monitoring.repository.queries import check_history, database_now, latest_status
from cim_monitoring.repository.retention import count_expired, purge_expired
from cim_monitoring.repository.stats import service_stats, status_series

__all__ = [
    "acknowledge_alert",
    "active_alerts",
    "alerts_by_id_prefix",
    "check_history",
    "count_expired",
    "dashboard",
    "database_now",
    "incidents",
    "latest_status",
    "purge_expired",
    "raise_alert",
    "record_check",
    "record_checks",
    "resolve_alert",
    "resolve_alerts",
    "service_stats",
    "status_changes",
    "status_series",
]
