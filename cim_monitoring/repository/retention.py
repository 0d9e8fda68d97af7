"""Retention: delete expired health checks, long-resolved alerts and old rollups in bounded
batches. Rollups are kept much longer than raw checks: they answer uptime and percentiles for
ranges whose raw rows are gone."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

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
from cim_monitoring.repository.queries import database_now
from cim_monitoring.repository.rollups import DAY, HOUR, ROLLUPS, TIME_COLUMNS, floor
from cim_monitoring.schemas import ExpiredRows, PurgeResult
from cim_monitoring.schemas.params import PurgeParams, RetentionParams

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
        checks, alerts, *rollups = (
            _drain(execute, expired, params.batch_size) for expired in _expired(now, params)
        )
    result = PurgeResult(
        cutoff=now - params.older_than, health_checks=checks, alerts=alerts, rollups=sum(rollups)
    )
    logger.info(
        "expired rows purged",
        extra={
            "count": checks + alerts,
            "health_checks": checks,
            "alerts": alerts,
            "rollups": result.rollups,
            "cutoff": result.cutoff.isoformat(),
            "duration_ms": elapsed(),
        },
    )
    return result


def count_expired(
    session: Session,
    *,
    older_than: timedelta = DEFAULT_RETENTION,
    now: datetime | None = None,
    rollups_older_than: timedelta = DEFAULT_ROLLUP_RETENTION,
) -> ExpiredRows:
    """What :func:`purge_expired` with the same arguments would delete, counted by the same
    rules and left in place (nothing is locked), and the time of the oldest expired check."""
    params = RetentionParams(older_than=older_than, now=now, rollups_older_than=rollups_older_than)
    now = params.now or database_now(session)
    expired = _expired(now, params)
    counts = [select(func.count()).select_from(e.table).where(e.where) for e in expired]
    oldest = select(func.min(CHECKS.c.created_at)).where(expired[0].where)
    checks, alerts, *rollups, oldest_at = session.execute(
        select(*(query.scalar_subquery() for query in [*counts, oldest]))
    ).one()
    return ExpiredRows(
        cutoff=now - params.older_than,
        health_checks=checks,
        alerts=alerts,
        rollups=sum(rollups),
        oldest_check_at=oldest_at,
    )


class _Expired(NamedTuple):
    """The rows of ``table`` that ``where`` selects, oldest first along an index by ``order``."""

    table: Table
    where: ColumnElement[bool]
    order: ColumnElement[Any]


def _expired(now: datetime, params: RetentionParams) -> list[_Expired]:
    """What retention deletes at ``now``: checks, resolved alerts, hourly and daily rollups."""
    cutoff = now - params.older_than
    # resolved_at >= created_at: the created_at bound lets the scan stop at the cut-off.
    resolved = (ALERTS.c.status == "resolved") & (ALERTS.c.resolved_at < cutoff)
    found = [
        _Expired(CHECKS, CHECKS.c.created_at < cutoff, CHECKS.c.created_at),
        _Expired(ALERTS, resolved & (ALERTS.c.created_at < cutoff), ALERTS.c.created_at),
    ]
    for grain in (HOUR, DAY):
        table = ROLLUPS[grain]
        time = table.c[TIME_COLUMNS[grain]]
        # A bucket goes only when all of it is older than the cut-off.
        found.append(_Expired(table, time < floor(now - params.rollups_older_than, grain), time))
    return found


def _database_now(target: Session | Engine) -> datetime:
    if isinstance(target, Session):
        return database_now(target)
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


def _drain(execute: Callable[[Delete], int], expired: _Expired, size: int) -> int:
    # Oldest first along an index: without the order the planner may pick a sequential scan
    # for the LIMIT, which re-reads the rows earlier batches deleted (250 ms per batch at 2M).
    table = expired.table
    key = tuple_(*table.primary_key.columns)
    victims = (
        select(*table.primary_key.columns)
        .where(expired.where)
        .order_by(expired.order)
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
