"""Validated inputs and frozen outputs of the repository API."""

from cim_monitoring.schemas.fields import DETAILS_MAX_BYTES, DETAILS_MAX_DEPTH, MESSAGE_MAX
from cim_monitoring.schemas.inputs import AlertIn, HealthCheckIn
from cim_monitoring.schemas.outputs import (
    AlertOut,
    Finding,
    HealthCheckOut,
    PurgeResult,
    ServiceStats,
    ServiceStatus,
    StatusBucket,
)

__all__ = [
    "DETAILS_MAX_BYTES",
    "DETAILS_MAX_DEPTH",
    "MESSAGE_MAX",
    "AlertIn",
    "AlertOut",
    "Finding",
    "HealthCheckIn",
    "HealthCheckOut",
    "PurgeResult",
    "ServiceStats",
    "ServiceStatus",
    "StatusBucket",
]
