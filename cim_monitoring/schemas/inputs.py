"""What callers write: one health check, one alert. Unknown keys are rejected (typo guard)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cim_monitoring.schemas.fields import (
    AlertType,
    HealthStatus,
    JsonObject,
    LatencyMs,
    Message,
    ServiceName,
    Severity,
    UtcDatetime,
)


class _In(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HealthCheckIn(_In):
    """One probe result. ``latency_ms`` is None when the service gave no response at all;
    ``created_at`` None means "now" (see ``record_check``)."""

    service_name: ServiceName
    status: HealthStatus
    latency_ms: LatencyMs | None = None
    probe_details: JsonObject = Field(default_factory=dict)
    error_message: Message | None = None
    created_at: UtcDatetime | None = None


class AlertIn(_In):
    """An alert about a service; raising the same open (service, type) again deduplicates."""

    service_name: ServiceName
    alert_type: AlertType
    severity: Severity
    message: Message
    details: JsonObject = Field(default_factory=dict)
