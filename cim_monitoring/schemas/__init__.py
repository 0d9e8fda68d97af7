"""Validated inputs and frozen outputs of the repository API."""

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
from cim_monitoring.vocabulary import DETAILS_MAX_BYTES, DETAILS_MAX_DEPTH, MESSAGE_MAX

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
