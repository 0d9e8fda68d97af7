"""Retention: drop the expired days of the health checks whole, and delete what is left of
them, long-resolved alerts and old rollups in bounded batches. Rollups are kept much longer than
raw checks: they answer uptime and percentiles for ranges whose raw rows are gone; the running
totals go with the hourly rollups. Status changes go with the rollups, except each service's
newest one, which still tells its status; a service's state goes with its last raw check."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    Delete,
    Engine,
    Table,
    delete,
    exists,
    func,
    select,
    tuple_,
)
from sqlalchemy.orm import Session

from cim_monitoring.partitions import add_partitions, database_today, drop_partitions
from cim_monitoring.repository._common import ALERTS, CHANGES, CHECKS, STATES, TOTALS, stopwatch
from cim_monitoring.repository.queries import database_now
from cim_monitoring.repository.rollups import DAY, HOUR, ROLLUPS, TIME_COLUMNS, floor
from cim_monitoring.schemas import ExpiredRows, PurgeResult
from cim_monitoring.schemas.params import PurgeParams, RetentionParams

logger = logging.getLogger(__name__)

DEFAULT_RETENTION = timedelta(days=30)
DEFAULT_ROLLUP_RETENTION = timedelta(days=400)
DEFAULT_BATCH_SIZE = 5000

_T = TypeVar("_T")


def purge_expired(
    target: Session | Engine,
    *,
    older_than: timedelta = DEFAULT_RETENTION,
    batch_size: int = DEFAULT_BATCH_SIZE,
    now: datetime | None = None,
    rollups_older_than: timedelta = DEFAULT_ROLLUP_RETENTION,
) -> PurgeResult:
    """Delete checks created before ``now - older_than``, alerts resolved before it and the
    state of services whose newest check is older; hourly and daily rollups and running totals
    that end before ``now - rollups_older_than``, and status changes older than that but each
    service's newest.

    The checks' partitions of today and the days ahead are made first; every day partition
    that ends by the cut-off is dropped whole (its rows counted), and only what is left (part
    of a day, the default partition) is deleted. Open alerts are never deleted, however old.
    Each DELETE takes at most ``batch_size`` rows and skips rows another purge has locked.
    Given an ``Engine``, the partition upkeep and every batch commit on their own, so no lock
    outlives its step and ingest carries on meanwhile; given a ``Session``, everything runs in
    the caller's transaction and its locks last until it ends (a dropped day holds the checks
    locked for everyone). ``now`` defaults to the database's clock; the days ahead always
    follow the database's clock.
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
        checks, *others = _expired(now, params)
        dropped = _drop_expired_days(target, now - params.older_than)
        deleted = _by_field(
            [
                (checks.field, dropped + _drain(execute, checks, params.batch_size)),
                *((e.field, _drain(execute, e, params.batch_size)) for e in others),
            ]
        )
    result = PurgeResult(cutoff=now - params.older_than, **deleted)
    logger.info(
        "expired rows purged",
        extra={
            "count": result.health_checks + result.alerts,
            **deleted,
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
    *found, oldest_at = session.execute(
        select(*(query.scalar_subquery() for query in [*counts, oldest]))
    ).one()
    return ExpiredRows(
        cutoff=now - params.older_than,
        oldest_check_at=oldest_at,
        **_by_field(zip((e.field for e in expired), found, strict=True)),
    )


def _by_field(counts: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Counts summed by the :class:`PurgeResult` field they belong to."""
    totals: dict[str, int] = {}
    for field, count in counts:
        totals[field] = totals.get(field, 0) + count
    return totals


class _Expired(NamedTuple):
    """The rows of ``table`` that ``where`` selects, oldest first along an index by ``order``,
    counted in the :class:`PurgeResult` field ``field``. ``partitioned``: ``where`` bounds the
    partition key, and the DELETE repeats it so that it visits only the partitions it names."""

    field: str
    table: Table
    where: ColumnElement[bool]
    order: ColumnElement[Any]
    partitioned: bool = False


def _expired(now: datetime, params: RetentionParams) -> list[_Expired]:
    """What retention deletes at ``now``: checks (first: count_expired reads its condition),
    resolved alerts, states, hourly and daily rollups, running totals, status changes."""
    cutoff = now - params.older_than
    rollups_cutoff = now - params.rollups_older_than
    # resolved_at >= created_at: the created_at bound lets the scan stop at the cut-off.
    resolved = (ALERTS.c.status == "resolved") & (ALERTS.c.resolved_at < cutoff)
    found = [
        _Expired("health_checks", CHECKS, CHECKS.c.created_at < cutoff, CHECKS.c.created_at, True),
        _Expired("alerts", ALERTS, resolved & (ALERTS.c.created_at < cutoff), ALERTS.c.created_at),
        _Expired("states", STATES, STATES.c.checked_at < cutoff, STATES.c.checked_at),
    ]
    for grain in (HOUR, DAY):
        table = ROLLUPS[grain]
        time = table.c[TIME_COLUMNS[grain]]
        # A bucket goes only when all of it is older than the cut-off.
        found.append(_Expired("rollups", table, time < floor(rollups_cutoff, grain), time))
    # The running totals go with the hourly rollups: a window's base is then the row before
    # it, or (none left) its first row less that hour's rollup.
    found.append(
        _Expired("totals", TOTALS, TOTALS.c.hour < floor(rollups_cutoff, HOUR), TOTALS.c.hour)
    )
    newer = CHANGES.alias("newer")
    newer_change = exists().where(
        newer.c.service_name == CHANGES.c.service_name,
        tuple_(newer.c.changed_at, newer.c.check_id)
        > tuple_(CHANGES.c.changed_at, CHANGES.c.check_id),
    )
    found.append(
        _Expired(
            "changes",
            CHANGES,
            (CHANGES.c.changed_at < rollups_cutoff) & newer_change,
            CHANGES.c.changed_at,
        )
    )
    return found


def _in_step(target: Session | Engine, work: Callable[[Session | Connection], _T]) -> _T:
    """``work`` in the session's transaction, or in a transaction of its own on the engine."""
    if isinstance(target, Session):
        return work(target)
    with target.begin() as connection:
        return work(connection)


def _database_now(target: Session | Engine) -> datetime:
    return _in_step(target, lambda bind: bind.execute(select(func.now())).scalar_one())


def _drop_expired_days(target: Session | Engine, cutoff: datetime) -> int:
    """Make the partitions ahead, then drop the day partitions that end by ``cutoff``; the
    number of rows dropped. When the checks could not be locked (a long query), nothing is
    dropped and the batched DELETE takes those rows instead."""

    def upkeep(bind: Session | Connection) -> int | None:
        add_partitions(bind, database_today(bind))
        return drop_partitions(bind, cutoff)

    dropped = _in_step(target, upkeep)
    if dropped is None:
        logger.warning(
            "expired days of service_health_checks not dropped: the table stayed locked by "
            "another transaction; deleting their rows instead",
            extra={"cutoff": cutoff.isoformat()},
        )
    return dropped or 0


def _executor(target: Session | Engine) -> Callable[[Delete], int]:
    """Run one DELETE and return its row count: in the session, or in its own transaction."""
    # Session.execute is typed for ORM results; a Core DELETE returns a CursorResult.
    return lambda statement: _in_step(
        target, lambda bind: cast(CursorResult[Any], bind.execute(statement)).rowcount
    )


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
    if expired.partitioned:
        statement = statement.where(expired.where)
    total = 0
    while True:
        deleted = execute(statement)
        total += deleted
        logger.debug("purge batch", extra={"table": table.name, "count": deleted})
        # A short batch means nothing expired is left, except rows a concurrent purge holds.
        if deleted < size:
            return total
