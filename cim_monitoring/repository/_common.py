"""What the repository modules share: the tables, the clock, timing for log lines."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from time import perf_counter
from typing import cast

from sqlalchemy import ColumnElement, DateTime, Table, Text, func, literal, text
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from cim_monitoring.models import (
    AlertEvent,
    ServiceHealthChange,
    ServiceHealthCheck,
    ServiceHealthState,
    ServiceHealthTotal,
)

CHECKS = cast(Table, ServiceHealthCheck.__table__)
ALERTS = cast(Table, AlertEvent.__table__)
STATES = cast(Table, ServiceHealthState.__table__)
CHANGES = cast(Table, ServiceHealthChange.__table__)
TOTALS = cast(Table, ServiceHealthTotal.__table__)


def at(now: datetime | None) -> ColumnElement[datetime]:
    """``now`` when injected, else the transaction's start time: the columns' own default."""
    if now is None:
        return func.now()
    return literal(now, DateTime(timezone=True))


def utc_text(moment: ColumnElement[datetime]) -> ColumnElement[str]:
    """``moment`` as ISO 8601 text in UTC (``2024-01-01 09:00:00.5+00``), for
    ``trusted_rows``: ``datetime.fromisoformat`` makes it an aware UTC datetime five times
    faster than psycopg loads a timestamptz in the connection's zone and ``astimezone`` moves
    it back to UTC. The text is the ISO DateStyle's, which psycopg needs for any moment."""
    return sql_cast(moment.op("AT TIME ZONE")(literal("UTC")), Text) + literal("+00")


# Evaluated left to right: the value before, then the change, local to the transaction.
_JIT_OFF = text("SELECT current_setting('jit') AS previous, set_config('jit', 'off', true)")
_JIT_BACK = text("SELECT set_config('jit', :previous, true)")


@contextmanager
def without_jit(session: Session) -> Iterator[None]:
    """JIT compilation off for the statements of the block, as it was after it.

    PostgreSQL compiles a plan whose estimated cost passes ``jit_above_cost``; a statement of
    thousands of cheap index probes passes it by far, and compiling it took 400 ms where
    running it took 60. When the block raises, the transaction is failed anyway, and rolling
    it (or its savepoint) back restores the setting.
    """
    previous = session.execute(_JIT_OFF).scalar_one()
    yield
    session.execute(_JIT_BACK, {"previous": previous})


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """Yields a function returning the milliseconds elapsed since the block began."""
    started = perf_counter()
    yield lambda: round((perf_counter() - started) * 1000, 3)
