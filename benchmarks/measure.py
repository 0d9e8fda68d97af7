"""Timing and plan capture: medians, every SQL statement an API call sends, plan summaries."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event


def median_ms(work: Callable[[], object], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


@dataclass
class Statement:
    sql: str
    params: Any
    ms: float


@dataclass
class StatementLog:
    """Statements sent through an Engine while ``capture`` is open, with their durations."""

    statements: list[Statement] = field(default_factory=list)

    @contextmanager
    def capture(self, engine: Engine) -> Iterator[StatementLog]:
        started: list[float] = []

        def before(*_: Any) -> None:
            started.append(time.perf_counter())

        def after(_conn: Any, _cursor: Any, sql: str, params: Any, *__: Any) -> None:
            self.statements.append(
                Statement(sql, params, (time.perf_counter() - started.pop()) * 1000)
            )

        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
        try:
            yield self
        finally:
            event.remove(engine, "before_cursor_execute", before)
            event.remove(engine, "after_cursor_execute", after)

    @property
    def slowest(self) -> Statement:
        return max(self.statements, key=lambda statement: statement.ms)


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of an ``EXPLAIN (FORMAT JSON)`` plan, depth first."""
    yield plan
    for child in plan.get("Plans", ()):
        yield from plan_nodes(child)


def describe(node: dict[str, Any]) -> str:
    """``Index Only Scan ix_x``, ``Seq Scan alert_events``, or just the node type."""
    target = node.get("Index Name") or node.get("Relation Name")
    return f"{node['Node Type']} {target}" if target else node["Node Type"]


def plan_summary(engine: Engine, statement: Statement) -> str:
    """The scans of ``statement``'s plan, in plan order, each named once."""
    with engine.connect() as connection:
        cursor = connection.connection.driver_connection.cursor()
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement.sql, statement.params or None)
        [[document]] = cursor.fetchall()
        connection.rollback()
    scans = [
        describe(node) for node in plan_nodes(document[0]["Plan"]) if "Scan" in node["Node Type"]
    ]
    return ", ".join(dict.fromkeys(scans))
