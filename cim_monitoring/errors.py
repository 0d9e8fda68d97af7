"""The package's exception hierarchy.

Bad input is reported with pydantic's ``ValidationError``; everything here is a domain or
operational error that a caller may want to catch as ``MonitoringError``.
"""

from __future__ import annotations


class MonitoringError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(MonitoringError):
    """The database URL (or another setting) is missing or unusable."""


class DatabaseUnavailable(MonitoringError):
    """The database could not be reached, or the connection was lost mid-call."""


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
