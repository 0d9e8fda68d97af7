"""The package's exception hierarchy.

Bad input is reported with pydantic's ``ValidationError``; everything here is a domain or
operational error that a caller may want to catch as ``MonitoringError``.
"""

from __future__ import annotations

import uuid


class MonitoringError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(MonitoringError):
    """The database URL (or another setting) is missing or unusable."""


class DatabaseUnavailable(MonitoringError):
    """The database could not be reached, or the connection was lost mid-call."""


class QueryTimeout(MonitoringError):
    """A statement ran longer than the server's ``statement_timeout`` (or was cancelled)."""


class MigrationError(MonitoringError):
    """A schema migration could not run (lock wait exceeded, downgrade refused, ...)."""


class IrreversibleMigration(MigrationError):
    """History is forward-only: a downgrade was requested."""

    def __init__(self, revision: str) -> None:
        super().__init__(
            f"revision {revision} cannot be downgraded: cim-monitoring migrations are "
            "forward-only; write a new revision that undoes the change instead"
        )
        self.revision = revision


class AlertNotFound(MonitoringError):
    """No alert has this id (or row level security hides it from the caller)."""

    def __init__(self, alert_id: uuid.UUID) -> None:
        super().__init__(f"alert {alert_id} does not exist")
        self.alert_id = alert_id


class InvalidTransition(MonitoringError):
    """The alert's lifecycle does not allow the requested change from its current status."""

    def __init__(self, alert_id: uuid.UUID, current: str, target: str) -> None:
        super().__init__(
            f"alert {alert_id} is {current}; it cannot become {target} "
            "(allowed: active → acknowledged → resolved, active → resolved)"
        )
        self.alert_id = alert_id
        self.current = current
        self.target = target
