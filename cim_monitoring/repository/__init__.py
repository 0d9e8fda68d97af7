"""The repository API: functions that take the caller's ``Session`` first, may flush, and never
commit. Inputs are validated before any SQL; outputs are frozen pydantic models."""

from cim_monitoring.repository.alerts import (
    acknowledge_alert,
    active_alerts,
    raise_alert,
    resolve_alert,
    resolve_alerts,
)
from cim_monitoring.repository.checks import record_check, record_checks
from cim_monitoring.repository.queries import check_history, latest_status
from cim_monitoring.repository.retention import purge_expired
from cim_monitoring.repository.stats import service_stats, status_series

__all__ = [
    "acknowledge_alert",
    "active_alerts",
    "check_history",
    "latest_status",
    "purge_expired",
    "raise_alert",
    "record_check",
    "record_checks",
    "resolve_alert",
    "resolve_alerts",
    "service_stats",
    "status_series",
]
