"""What the repository modules share: the tables, the clock, timing for log lines."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from time import perf_counter
from typing import cast

from sqlalchemy import ColumnElement, DateTime, Table, func, literal

from cim_monitoring.models import (
    AlertEvent,
    ServiceHealthChange,
    ServiceHealthCheck,
    ServiceHealthState,
)

CHECKS = cast(Table, ServiceHealthCheck.__table__)
ALERTS = cast(Table, AlertEvent.__table__)
STATES = cast(Table, ServiceHealthState.__table__)
CHANGES = cast(Table, ServiceHealthChange.__table__)


def at(now: datetime | None) -> ColumnElement[datetime]:
    """``now`` when injected, else the transaction's start time: the columns' own default."""
    if now is None:
        return func.now()
    return literal(now, DateTime(timezone=True))


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """Yields a function returning the milliseconds elapsed since the block began."""
    started = perf_counter()
    yield lambda: round((perf_counter() - started) * 1000, 3)
