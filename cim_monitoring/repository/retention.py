"""Retention: delete expired health checks and long-resolved alerts in bounded batches."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Delete, Engine, Table, delete, func, select
from sqlalchemy.orm import Session

from cim_monitoring.repository._common import ALERTS, CHECKS, stopwatch
from cim_monitoring.schemas import PurgeResult
from cim_monitoring.schemas.params import PurgeParams

logger = logging.getLogger(__name__)

DEFAULT_RETENTION = timedelta(days=30)
DEFAULT_BATCH_SIZE = 5000


def purge_expired(
    target: Session | Engine,
    *,
    older_than: timedelta = DEFAULT_RETENTION,
    batch_size: int = DEFAULT_BATCH_SIZE,
    now: datetime | None = None,
) -> PurgeResult:
    """Delete checks created before ``now - older_than`` and alerts resolved before it.

    Open alerts are never deleted, however old. Each DELETE takes at most ``batch_size`` rows
    and skips rows another purge has locked. Given an ``Engine``, every batch commits on its
    own, so no lock outlives a batch and ingest carries on meanwhile; given a ``Session``, the
    batches run in the caller's transaction and their locks last until it ends. ``now``
    defaults to the database's clock.
    """
    params = PurgeParams(older_than=older_than, batch_size=batch_size, now=now)
    execute = _executor(target)
    with stopwatch() as elapsed:
        cutoff = (params.now or _database_now(target)) - params.older_than
        checks = _drain(execute, CHECKS, CHECKS.c.created_at < cutoff, params.batch_size)
        alerts = _drain(
            execute,
            ALERTS,
            (ALERTS.c.status == "resolved") & (ALERTS.c.resolved_at < cutoff),
            params.batch_size,
        )
    result = PurgeResult(cutoff=cutoff, health_checks=checks, alerts=alerts)
    logger.info(
        "expired rows purged",
        extra={
            "count": checks + alerts,
            "health_checks": checks,
            "alerts": alerts,
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
    execute: Callable[[Delete], int], table: Table, expired: ColumnElement[bool], size: int
) -> int:
    victims = select(table.c.id).where(expired).limit(size).with_for_update(skip_locked=True)
    statement = delete(table).where(table.c.id.in_(victims))
    total = 0
    while True:
        deleted = execute(statement)
        total += deleted
        logger.debug("purge batch", extra={"table": table.name, "count": deleted})
        # A short batch means nothing expired is left, except rows a concurrent purge holds.
        if deleted < size:
            return total
