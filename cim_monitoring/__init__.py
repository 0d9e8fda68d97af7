"""cim-monitoring: persistent service-health checks and alerts for CIM Summary."""

from importlib.metadata import version as _distribution_version

from cim_monitoring.config import Settings, normalize_url, redact_url
from cim_monitoring.db import make_engine, make_session_factory, session_scope
from cim_monitoring.errors import (
    AlertNotFound,
    ConfigurationError,
    DatabaseUnavailable,
    InvalidTransition,
    IrreversibleMigration,
    MigrationError,
    MonitoringError,
    QueryTimeout,
)
from cim_monitoring.models import AlertEvent, Base, ServiceHealthCheck
from cim_monitoring.objects import DatabaseObject, ObjectKind, owned_objects, role_privileges
from cim_monitoring.repository import (
    acknowledge_alert,
    active_alerts,
    check_history,
    latest_status,
    purge_expired,
    raise_alert,
    record_check,
    record_checks,
    resolve_alert,
    resolve_alerts,
    service_stats,
    status_series,
)
from cim_monitoring.schemas import (
    AlertIn,
    AlertOut,
    Finding,
    HealthCheckIn,
    HealthCheckOut,
    PurgeResult,
    ServiceStats,
    ServiceStatus,
    StatusBucket,
)
from cim_monitoring.verify import verify_database

__version__ = _distribution_version("cim-monitoring")

__all__ = [
    "AlertEvent",
    "AlertIn",
    "AlertNotFound",
    "AlertOut",
    "Base",
    "ConfigurationError",
    "DatabaseObject",
    "DatabaseUnavailable",
    "Finding",
    "HealthCheckIn",
    "HealthCheckOut",
    "InvalidTransition",
    "IrreversibleMigration",
    "MigrationError",
    "MonitoringError",
    "ObjectKind",
    "PurgeResult",
    "QueryTimeout",
    "ServiceHealthCheck",
    "ServiceStats",
    "ServiceStatus",
    "Settings",
    "StatusBucket",
    "acknowledge_alert",
    "active_alerts",
    "check_history",
    "latest_status",
    "make_engine",
    "make_session_factory",
    "normalize_url",
    "owned_objects",
    "purge_expired",
    "raise_alert",
    "record_check",
    "record_checks",
    "redact_url",
    "resolve_alert",
    "resolve_alerts",
    "role_privileges",
    "service_stats",
    "session_scope",
    "status_series",
    "verify_database",
]
