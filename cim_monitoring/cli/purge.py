"""``purge``: retention, deleting old health checks and resolved alerts with a progress bar."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

import typer
from sqlalchemy import Connection, func, select

from cim_monitoring.cli.console import out, progress
from cim_monitoring.cli.database import database, database_now, require_migrated
from cim_monitoring.cli.durations import parse_duration
from cim_monitoring.models import AlertEvent, ServiceHealthCheck
from cim_monitoring.repository import purge_expired

# purge_expired reports only when it is done; cut-offs stepping from the oldest expired row to
# the real one give the progress bar true steps, each call still deleting in bounded batches.
PURGE_STEPS = 20


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
