"""Retention: delete expired health checks, long-resolved alerts and old rollups in bounded
batches. Rollups are kept much longer than raw checks: they answer uptime and percentiles for
ranges whose raw rows are gone."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Delete,
    Engine,
    Table,
    delete,
    func,
    select,
    tuple_,
)
from sqlalchemy.orm import Session

from cim_monitoring.repository._common import ALERTS, CHECKS, stopwatch
from cim_monitoring.repository.rollups import DAY, HOUR, ROLLUPS, TIME_COLUMNS, floor
from cim_monitoring.schemas import PurgeResult
from cim_monitoring.schemas.params import PurgeParams

logger = logging.getLogger(__name__)

DEFAULT_RETENTION = timedelta(days=30)
DEFAULT_ROLLUP_RETENTION = timedelta(days=400)
DEFAULT_BATCH_SIZE = 5000


def purge_expired(
    target: Session | Engine,
    *,
    older_than: timedelta = DEFAULT_RETENTION,
    batch_size: int = DEFAULT_BATCH_SIZE,
    now: datetime | None = None,
    rollups_older_than: timedelta = DEFAULT_ROLLUP_RETENTION,
) -> PurgeResult:
    """Delete checks created before ``now - older_than`` and alerts resolved before it, and
    hourly and daily rollups that end before ``now - rollups_older_than``.

    Open alerts are never deleted, however old. Each DELETE takes at most ``batch_size`` rows
    and skips rows another purge has locked. Given an ``Engine``, every batch commits on its
    own, so no lock outlives a batch and ingest carries on meanwhile; given a ``Session``, the
    batches run in the caller's transaction and their locks last until it ends. ``now``
    defaults to the database's clock.
    """
    params = PurgeParams(
        older_than=older_than,
        batch_size=batch_size,
        now=now,
        rollups_older_than=rollups_older_than,
    )
    execute = _executor(target)
    with stopwatch() as elapsed:
        now = params.now or _database_now(target)
        cutoff = now - params.older_than
        size = params.batch_size
        checks = _drain(execute, CHECKS, CHECKS.c.created_at < cutoff, CHECKS.c.created_at, size)
        # resolved_at >= created_at: the created_at bound lets the scan stop at the cut-off.
        resolved = (ALERTS.c.status == "resolved") & (ALERTS.c.resolved_at < cutoff)
        old = resolved & (ALERTS.c.created_at < cutoff)
        alerts = _drain(execute, ALERTS, old, ALERTS.c.created_at, size)
        rollups = 0
        for grain in (HOUR, DAY):
            table = ROLLUPS[grain]
            time = table.c[TIME_COLUMNS[grain]]
            # A bucket goes only when all of it is older than the cut-off.
            ended = time < floor(now - params.rollups_older_than, grain)
            rollups += _drain(execute, table, ended, time, size)
    result = PurgeResult(cutoff=cutoff, health_checks=checks, alerts=alerts, rollups=rollups)
    logger.info(
        "expired rows purged",
        extra={
            "count": checks + alerts,
            "health_checks": checks,
            "alerts": alerts,
            "rollups": rollups,
            "cutoff": result.cutoff.isoformat(),
            "duration_ms": elapsed(),
        },
    )
    return result


def _database_now(target: Session | Engine) -> datetime:
    if isinstance(target, Session):
        return target.execute(select(func.now())).scalar_one()
    with target.connect() as connection:
        return connection.execute(select(func.now())).scalar_one()


def _executor(target: Session | Engine) -> Callable[[Delete], int]:
    """Run one DELETE and return its row count: in the session, or in its own transaction."""
    if isinstance(target, Session):
        session = target
        # Session.execute is typed for ORM results; a Core DELETE returns a CursorResult.
        return lambda statement: cast(CursorResult[Any], session.execute(statement)).rowcount
    engine = target

    def own_transaction(statement: Delete) -> int:
        with engine.begin() as connection:
            return connection.execute(statement).rowcount

    return own_transaction


def _drain(
    execute: Callable[[Delete], int],
    table: Table,
    expired: ColumnElement[bool],
    oldest_first: ColumnElement[Any],
    size: int,
) -> int:
    # Oldest first along an index: without the order the planner may pick a sequential scan
    # for the LIMIT, which re-reads the rows earlier batches deleted (250 ms per batch at 2M).
    key = tuple_(*table.primary_key.columns)
    victims = (
        select(*table.primary_key.columns)
        .where(expired)
        .order_by(oldest_first)
        .limit(size)
        .with_for_update(skip_locked=True)
    )
    statement = delete(table).where(key.in_(victims))
    total = 0
    while True:
        deleted = execute(statement)
        total += deleted
        logger.debug("purge batch", extra={"table": table.name, "count": deleted})
        # A short batch means nothing expired is left, except rows a concurrent purge holds.
        if deleted < size:
            return total
