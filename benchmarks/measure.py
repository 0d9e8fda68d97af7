"""Timing and plan summaries; the statement capture is the workbench's, shared with the tests."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine

from workbench.plans import Statement, explain, scans


def median_ms(work: Callable[[], object], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def driver(connection: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under ``connection`` (our engines use no other driver)."""
    raw = connection.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise TypeError(f"expected a psycopg connection, got {type(raw).__name__}")
    return raw


def plan_summary(engine: Engine, statement: Statement) -> str:
    """The scans of ``statement``'s plan, in plan order, each named once."""
    with engine.connect() as connection:
        cursor = driver(connection).cursor()
        cursor.execute(*explain(statement))
        [[document]] = cursor.fetchall()
        connection.rollback()
    return ", ".join(dict.fromkeys(scans(document)))
