"""``purge``: retention, deleting old health checks, resolved alerts, rollups and status
changes with a progress bar; ``--dry-run`` counts the same rows and deletes nothing."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Annotated

import typer

from cim_monitoring import ExpiredRows, PurgeResult, count_expired, purge_expired
from cim_monitoring.cli.console import out, progress
from cim_monitoring.cli.database import database, migrated_session
from cim_monitoring.cli.durations import duration_label, duration_option

# purge_expired reports only when it is done; cut-offs stepping from the oldest expired check
# to the real one give the progress bar true steps, each call still deleting in bounded batches.
PURGE_STEPS = 20
_COUNTED = ("health_checks", "alerts", "states", "rollups", "totals", "changes")


def purge(
    older_than: Annotated[
        timedelta,
        duration_option(
            "--older-than", "Delete checks, and alerts resolved, before now minus this."
        ),
    ] = timedelta(days=30),
    rollups_older_than: Annotated[
        timedelta,
        duration_option(
            "--rollups-older-than",
            "Delete hourly and daily rollups and running totals ended, and status changes "
            "(but each service's newest) made, before now minus this.",
        ),
    ] = timedelta(days=400),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be deleted.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Rows per DELETE (per lock).")
    ] = 5000,
) -> None:
    """Delete health checks, and alerts resolved, before now minus --older-than, and rollups,
    running totals and status changes older than --rollups-older-than."""
    with database() as engine:
        with migrated_session(engine) as session:
            expired = count_expired(
                session, older_than=older_than, rollups_older_than=rollups_older_than
            )
        if dry_run:
            out.print(
                f"would delete {_rows(expired, rollups_older_than)} (dry run: nothing deleted)"
            )
            return
        deleted: Counter[str] = Counter()
        with progress() as bar:
            task = bar.add_task("purging", total=_total(expired))
            for cutoff in _cutoffs(expired):
                result = purge_expired(
                    engine,
                    older_than=older_than,
                    rollups_older_than=rollups_older_than,
                    batch_size=batch_size,
                    now=cutoff + older_than,
                )
                deleted.update(result.model_dump(include=set(_COUNTED)))
                bar.update(
                    task, completed=deleted.total(), total=max(_total(expired), deleted.total())
                )
    done = PurgeResult(cutoff=expired.cutoff, **deleted)
    out.print(f"deleted {_rows(done, rollups_older_than)}")


def _total(rows: PurgeResult) -> int:
    return sum(getattr(rows, field) for field in _COUNTED)


def _rows(rows: PurgeResult, rollups_older_than: timedelta) -> str:
    when = rows.cutoff.isoformat(timespec="seconds")
    return (
        f"{rows.health_checks} health checks, {rows.alerts} resolved alerts and "
        f"{rows.states} service states from before {when}, and {rows.rollups} rollup rows, "
        f"{rows.totals} running totals and {rows.changes} status changes older than "
        f"{duration_label(rollups_older_than)}"
    )


def _cutoffs(expired: ExpiredRows) -> list[datetime]:
    """Evenly spaced cut-offs from just past the oldest expired check to the real cut-off."""
    if expired.oldest_check_at is None:
        return [expired.cutoff]
    step = (expired.cutoff - expired.oldest_check_at) / PURGE_STEPS
    return [expired.oldest_check_at + step * index for index in range(1, PURGE_STEPS)] + [
        expired.cutoff
    ]
