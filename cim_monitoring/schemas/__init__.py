"""Validated inputs and frozen outputs of the repository API."""

from cim_monitoring.schemas.inputs import AlertIn, HealthCheckIn
from cim_monitoring.schemas.outputs import (
    AlertOut,
    Dashboard,
    ExpiredRows,
    Finding,
    HealthCheckOut,
    HourStatus,
    Incident,
    PurgeResult,
    ServiceStats,
    ServiceStatus,
    ServiceSummary,
    StatusBucket,
    StatusChange,
)
from cim_monitoring.schemas.params import AlertIdPrefix
from cim_monitoring.vocabulary import DETAILS_MAX_BYTES, DETAILS_MAX_DEPTH, MESSAGE_MAX

__all__ = [
    "DETAILS_MAX_BYTES",
    "DETAILS_MAX_DEPTH",
    "MESSAGE_MAX",
    "AlertIdPrefix",
    "AlertIn",
    "AlertOut",
    "Dashboard",
    "ExpiredRows",
    "Finding",
    "HealthCheckIn",
    "HealthCheckOut",
    "HourStatus",
    "Incident",
    "PurgeResult",
    "ServiceStats",
    "ServiceStatus",
    "ServiceSummary",
    "StatusBucket",
    "StatusChange",
]
