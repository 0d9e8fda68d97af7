"""What the repository returns: frozen snapshots, never live ORM objects.

Timestamps are converted to UTC whatever the connection's ``TimeZone`` setting is.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer

from cim_monitoring.schemas.fields import UtcDatetime


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)


# A duration, as seconds in JSON: what a script reading ``status --json`` computes with.
Seconds = Annotated[
    timedelta,
    PlainSerializer(lambda span: span.total_seconds(), return_type=float, when_used="json"),
]


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
    ``rollups`` counts hourly and daily rollup rows together, ``changes`` status changes,
    ``states`` the state rows of services with no check since the cut-off."""

    cutoff: UtcDatetime
    health_checks: int
    alerts: int
    rollups: int = 0
    changes: int = 0
    states: int = 0


class ExpiredRows(PurgeResult):
    """What :func:`cim_monitoring.purge_expired` would delete at the same ``now``, counted by
    the same rules, and the time of the oldest expired check (None when none is)."""

    oldest_check_at: UtcDatetime | None


class HourStatus(_Out):
    """One UTC hour ``[start, start + 1 h)`` of a service: the worst status of its checks
    (down, then degraded, then healthy), None when it had none."""

    start: UtcDatetime
    status: str | None


class ServiceSummary(_Out):
    """One service on the dashboard. ``status``, ``last_check_at``, ``age`` and ``latency_ms``
    are its newest check's (None without one); ``checks``, ``uptime`` and ``p95_ms`` cover the
    dashboard's window (as :class:`ServiceStats`); ``timeline`` is the last 24 hours, oldest
    first, the last entry the hour holding the dashboard's ``generated_at``."""

    service_name: str
    status: str | None
    last_check_at: UtcDatetime | None
    age: Seconds | None
    latency_ms: int | None
    checks: int
    uptime: float | None
    p95_ms: int | None
    open_alerts: int
    worst_open_severity: str | None
    timeline: tuple[HourStatus, ...]


class Dashboard(_Out):
    """Every service known from its checks or its open alerts, by name, as of
    ``generated_at``; ``window`` is the span of the uptime and p95 figures."""

    generated_at: UtcDatetime
    window: Seconds
    services: tuple[ServiceSummary, ...]


class Finding(_Out):
    """One check of :func:`cim_monitoring.verify_database`: ``ok``, or what is wrong and the
    fix (SQL or a command) for an operator."""

    check: str
    ok: bool
    message: str
    fix: str | None = None
