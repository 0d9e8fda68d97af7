"""cim-monitoring: persistent service-health checks and alerts for CIM Summary."""

from cim_monitoring.config import Settings, normalize_url, redact_url
from cim_monitoring.db import make_engine, make_session_factory, session_scope
from cim_monitoring.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    IrreversibleMigration,
    MigrationError,
    MonitoringError,
)
from cim_monitoring.models import AlertEvent, Base, ServiceHealthCheck

__all__ = [
    "AlertEvent",
    "Base",
    "ConfigurationError",
    "DatabaseUnavailable",
    "IrreversibleMigration",
    "MigrationError",
    "MonitoringError",
    "ServiceHealthCheck",
    "Settings",
    "make_engine",
    "make_session_factory",
    "normalize_url",
    "redact_url",
    "session_scope",
]
