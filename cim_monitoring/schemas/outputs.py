"""What the repository returns: frozen snapshots, never live ORM objects.

Timestamps are converted to UTC whatever the connection's ``TimeZone`` setting is.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Annotated, Any, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, PlainSerializer

from cim_monitoring.schemas.fields import TO_UTC, UtcDatetime


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)


OutT = TypeVar("OutT", bound=_Out)

# The instance slots every pydantic model has, set as ``BaseModel.model_construct`` sets them,
# without its per-call walk over the fields (defaults, aliases): that walk cost more than
# validating. tests/test_trusted_rows.py holds the result equal to a validated one.
_SLOTS = BaseModel.__dict__
_BUILDER_NAMESPACE = {
    "UTC": UTC,
    "from_iso": datetime.fromisoformat,
    "new": object.__new__,
    "set_values": _SLOTS["__dict__"].__set__,
    "set_fields_set": _SLOTS["__pydantic_fields_set__"].__set__,
    "set_extra": _SLOTS["__pydantic_extra__"].__set__,
    "set_private": _SLOTS["__pydantic_private__"].__set__,
}


def trusted_rows(model: type[OutT], rows: Iterable[Sequence[Any]]) -> list[OutT]:
    """``rows``, each holding the values of ``model``'s fields in their order, as instances of
    ``model``, without validation: only for rows read back from our own tables, whose
    constraints hold what validation would check (validating 5,000 rows took several times
    as long as fetching them). Moments are still converted to UTC, as validation does. A
    moment may also come as ISO 8601 text with a zero offset (``repository._common.utc_text``)."""
    built: list[OutT] = _builder(model)(rows)
    return built


@cache
def _builder(model: type[_Out]) -> Callable[[Iterable[Sequence[Any]]], list[Any]]:
    """The loop of :func:`trusted_rows`, written out for ``model``'s fields, as
    ``collections.namedtuple`` writes its methods: each row unpacked into locals and its dict
    built as a literal took 25 % less time than ``dict(zip(names, row))`` and a loop over the
    moments, the difference between more and less than twice a bare fetch at 5,000 rows. The
    source holds only the field names (identifiers of our own models) and fixed text."""
    names = tuple(model.model_fields)
    moments = _moments(model)
    locals_ = [f"v{index}" for index in range(len(names))]
    lines = [
        "def build(rows):",
        "    found = []",
        "    append = found.append",
        f"    for {', '.join(locals_)}, in rows:",
        *(
            f"        if type({value}) is str: {value} = from_iso({value})\n"
            f"        elif {value} is not None and {value}.tzinfo is not UTC: "
            f"{value} = {value}.astimezone(UTC)"
            for name, value in zip(names, locals_, strict=True)
            if name in moments
        ),
        "        instance = new(model)",
        "        set_values(instance, {"
        + ", ".join(f"{name!r}: {value}" for name, value in zip(names, locals_, strict=True))
        + "})",
        # Shared: a frozen model's set of fields never changes (model_copy copies it first).
        "        set_fields_set(instance, fields_set)",
        "        set_extra(instance, None)",
        "        set_private(instance, None)",
        "        append(instance)",
        "    return found",
    ]
    namespace = {**_BUILDER_NAMESPACE, "model": model, "fields_set": set(names)}
    exec("\n".join(lines), namespace)  # noqa: S102 - our own field names, see the docstring
    build: Callable[[Iterable[Sequence[Any]]], list[Any]] = namespace["build"]
    return build


@cache
def _moments(model: type[_Out]) -> tuple[str, ...]:
    """The fields of ``model`` that hold a moment (``UtcDatetime``, optional or not)."""
    return tuple(
        name
        for name, field in model.model_fields.items()
        if TO_UTC in field.metadata
        or any(TO_UTC in getattr(arg, "__metadata__", ()) for arg in get_args(field.annotation))
    )


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
    over the checks that had one, None when none had. ``incidents`` counts the
    incidents (:class:`Incident`) overlapping the range, ``downtime_seconds`` sums how much of
    the range (up to the database's ``now()``) they cover."""

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
    incidents: int
    downtime_seconds: float


class StatusChange(_Out):
    """A check whose status differs from the service's previous check (by ``created_at``,
    then id); ``from_status`` is None for the service's first check."""

    service_name: str
    changed_at: UtcDatetime
    from_status: str | None
    to_status: str


class Incident(_Out):
    """A maximal run of non-healthy checks of one service: from its first check to the first
    healthy check after it (``ended_at``; None while it is ongoing). ``worst_status`` is the
    worst of its checks (down is worse than degraded). ``duration`` is ``ended_at -
    started_at``; for an ongoing incident, up to the end of the window asked about or the
    database's ``now()``, whichever is earlier (never negative)."""

    service_name: str
    started_at: UtcDatetime
    ended_at: UtcDatetime | None
    worst_status: str
    duration: Seconds


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
    ``rollups`` counts hourly and daily rollup rows together, ``totals`` the services' running
    totals by hour, ``changes`` status changes, ``states`` the state rows of services with no
    check since the cut-off."""

    cutoff: UtcDatetime
    health_checks: int
    alerts: int
    rollups: int = 0
    changes: int = 0
    states: int = 0
    totals: int = 0


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
    first, the last entry the hour holding the dashboard's ``generated_at``; ``incident_since`` is
    the start of its open incident (None when its newest check is healthy, or it has none)."""

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
    incident_since: UtcDatetime | None


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
