"""The SQL an API call sends, and the scans of its plans."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, event


@dataclass
class Statement:
    sql: str
    params: Any
    ms: float


@dataclass
class StatementLog:
    """Statements sent through an Engine or a Connection while ``capture`` is open, with their
    durations."""

    statements: list[Statement] = field(default_factory=list)

    @contextmanager
    def capture(self, target: Engine | Connection) -> Iterator[StatementLog]:
        started: list[float] = []

        def before(*_: Any) -> None:
            started.append(time.perf_counter())

        def after(_conn: Any, _cursor: Any, sql: str, params: Any, *__: Any) -> None:
            self.statements.append(
                Statement(sql, params, (time.perf_counter() - started.pop()) * 1000)
            )

        event.listen(target, "before_cursor_execute", before)
        event.listen(target, "after_cursor_execute", after)
        try:
            yield self
        finally:
            event.remove(target, "before_cursor_execute", before)
            event.remove(target, "after_cursor_execute", after)

    @property
    def slowest(self) -> Statement:
        return max(self.statements, key=lambda statement: statement.ms)


def explain(statement: Statement) -> tuple[str, Any]:
    """The driver-level SQL and parameters that EXPLAIN ``statement`` as JSON."""
    return "EXPLAIN (FORMAT JSON) " + statement.sql, statement.params or None


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of an ``EXPLAIN (FORMAT JSON)`` plan, depth first."""
    yield plan
    for child in plan.get("Plans", ()):
        yield from plan_nodes(child)


def describe(node: dict[str, Any]) -> str:
    """``Index Only Scan ix_x``, ``Seq Scan alert_events``, or just the node type."""
    target = node.get("Index Name") or node.get("Relation Name")
    return f"{node['Node Type']} {target}" if target else node["Node Type"]


def scans(document: Any) -> list[str]:
    """The scans of an ``EXPLAIN (FORMAT JSON)`` result, in plan order."""
    return [
        describe(node) for node in plan_nodes(document[0]["Plan"]) if "Scan" in node["Node Type"]
    ]
