"""What the repository returns: frozen snapshots, never live ORM objects.

Timestamps are converted to UTC whatever the connection's ``TimeZone`` setting is.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict

from cim_monitoring.schemas.fields import UtcDatetime


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)


class HealthCheckOut(_Out):
    id: int
    service_name: str
    status: str
    latency_ms: int | None
    probe_details: dict[str, Any]
    error_message: str | None
    created_at: UtcDatetime


class ServiceStatus(_Out):
    """The newest check of one service."""

    service_name: str
    status: str
    latency_ms: int | None
    created_at: UtcDatetime


class ServiceStats(_Out):
    """One service over a time range. ``uptime`` is healthy / total (degraded is not up) and
    None when there were no checks; percentiles are observed latencies (``percentile_disc``)
    over the checks that had one, None when none had."""

    service_name: str
    total: int
    healthy: int
    degraded: int
    down: int
    uptime: float | None
    p50_ms: int | None
    p95_ms: int | None
    p99_ms: int | None
    max_ms: int | None


class StatusBucket(_Out):
    """One time bucket ``[start, start + bucket)`` of a service's checks."""

    start: UtcDatetime
    total: int
    healthy: int
    degraded: int
    down: int
    p95_ms: int | None


class AlertOut(_Out):
    id: uuid.UUID
    service_name: str
    alert_type: str
    severity: str
    status: str
    message: str
    details: dict[str, Any]
    occurrence_count: int
    last_seen_at: UtcDatetime
    created_at: UtcDatetime
    acknowledged_at: UtcDatetime | None
    acknowledged_by: str | None
    resolved_at: UtcDatetime | None
    resolved_by: str | None


class PurgeResult(_Out):
    """What one retention run deleted, and the cut-off it used for checks and alerts;
    ``rollups`` counts hourly and daily rollup rows together."""

    cutoff: UtcDatetime
    health_checks: int
    alerts: int
    rollups: int = 0


class Finding(_Out):
    """One check of :func:`cim_monitoring.verify_database`: ``ok``, or what is wrong and the
    fix (SQL or a command) for an operator."""

    check: str
    ok: bool
    message: str
    fix: str | None = None
