"""``record`` (one health check from a cron probe or script) and ``purge`` (retention)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer
from sqlalchemy import Connection, func, select

from cim_monitoring.cli_common import (
    AsJson,
    database,
    database_now,
    out,
    parse_duration,
    progress,
    require_migrated,
    unit_of_work,
    usage_error,
)
from cim_monitoring.models import AlertEvent, ServiceHealthCheck
from cim_monitoring.repository import purge_expired, record_check
from cim_monitoring.schemas import HealthCheckIn

# purge_expired reports only when it is done; cut-offs stepping from the oldest expired row to
# the real one give the progress bar true steps, each call still deleting in bounded batches.
PURGE_STEPS = 20


def record(
    service: Annotated[str, typer.Argument(help="The service probed, e.g. llm-api.")],
    status: Annotated[str, typer.Argument(help="healthy, degraded or down.")],
    latency_ms: Annotated[
        int | None, typer.Option("--latency-ms", help="Response time; omit when none came.")
    ] = None,
    error: Annotated[str | None, typer.Option("--error", help="What went wrong.")] = None,
    detail: Annotated[
        list[str] | None,
        typer.Option("--detail", help="KEY=VALUE probe detail, repeatable; JSON values parse."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="When the check ran, ISO 8601 with offset; default now."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Record one health check, e.g. from a cron probe: `record llm-api down --error timeout`."""
    check = HealthCheckIn.model_validate(
        {
            "service_name": service,
            "status": status,
            "latency_ms": latency_ms,
            "error_message": error,
            "probe_details": _details(detail or []),
            "created_at": _timestamp(at) if at is not None else None,
        }
    )
    with unit_of_work() as session:
        stored = record_check(session, check)
    if as_json:
        typer.echo(stored.model_dump_json(indent=2))
        return
    latency = "no response" if stored.latency_ms is None else f"{stored.latency_ms} ms"
    out.print(
        f"recorded check {stored.id}: {stored.service_name} {stored.status} ({latency}) "
        f"at {stored.created_at.isoformat()}"
    )


def _details(pairs: list[str]) -> dict[str, Any]:
    details: dict[str, Any] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise usage_error(f"--detail {pair!r} is not KEY=VALUE")
        try:
            details[key] = json.loads(value)
        except ValueError:
            details[key] = value  # a bare word is a string
    return details


def _timestamp(raw: str) -> datetime:
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise usage_error(
            f"--at {raw!r} is not an ISO 8601 time; write e.g. 2026-03-01T12:00:00+00:00"
        ) from None


@dataclass(frozen=True)
class _Expired:
    cutoff: datetime
    oldest: datetime | None
    health_checks: int
    alerts: int


def purge(
    older_than: Annotated[
        timedelta,
        typer.Option("--older-than", parser=parse_duration, help="Delete what is older than this."),
    ] = timedelta(days=30),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be deleted.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Rows per DELETE (per lock).")
    ] = 5000,
) -> None:
    """Delete health checks, and alerts resolved, before now minus --older-than."""
    with database() as engine:
        with engine.connect() as connection:
            require_migrated(connection)
            expired = _count_expired(connection, older_than)
        total = expired.health_checks + expired.alerts
        when = expired.cutoff.isoformat(timespec="seconds")
        if dry_run:
            out.print(
                f"would delete {expired.health_checks} health checks and {expired.alerts} "
                f"resolved alerts from before {when} (dry run: nothing deleted)"
            )
            return
        checks = alerts = 0
        with progress() as bar:
            task = bar.add_task("purging", total=total)
            for cutoff in _cutoffs(expired):
                result = purge_expired(
                    engine, older_than=older_than, batch_size=batch_size, now=cutoff + older_than
                )
                checks += result.health_checks
                alerts += result.alerts
                bar.update(task, completed=checks + alerts, total=max(total, checks + alerts))
    out.print(f"deleted {checks} health checks and {alerts} resolved alerts from before {when}")


def _count_expired(connection: Connection, older_than: timedelta) -> _Expired:
    cutoff = database_now(connection) - older_than
    created = ServiceHealthCheck.created_at
    checks, oldest = connection.execute(
        select(func.count(), func.min(created)).where(created < cutoff)
    ).one()
    alerts = connection.execute(
        select(func.count()).where(AlertEvent.status == "resolved", AlertEvent.resolved_at < cutoff)
    ).scalar_one()
    connection.rollback()  # read-only; end the transaction before the purge's own ones begin
    return _Expired(cutoff=cutoff, oldest=oldest, health_checks=checks, alerts=alerts)


def _cutoffs(expired: _Expired) -> list[datetime]:
    """Evenly spaced cut-offs from just past the oldest expired row to the real cut-off."""
    if expired.oldest is None:
        return [expired.cutoff]
    step = (expired.cutoff - expired.oldest) / PURGE_STEPS
    return [expired.oldest + step * index for index in range(1, PURGE_STEPS)] + [expired.cutoff]
