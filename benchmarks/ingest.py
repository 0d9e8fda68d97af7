"""Ingest: ``record_checks`` against the raw methods of writing the same rows, and
``record_check`` in its own transaction against raw psycopg, one row per transaction.

Every side writes the same table, so every side pays the same index and rollup-trigger cost; the
bulk runs are rolled back. As the production role (Row Level Security applies, ``COPY FROM``
into the table is refused) the best raw method is a binary COPY into a temporary table and one
``INSERT ... SELECT``; a superuser's binary COPY straight into the table is the ceiling.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.measure import driver, median_ms
from cim_monitoring import record_check
from cim_monitoring.vocabulary import HEALTH_CHECK_COLUMNS
from workbench.fleet import service_name

_COLUMNS = ", ".join(HEALTH_CHECK_COLUMNS)
_COPY = f"COPY service_health_checks ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_STAGING = "benchmark_checks_staging"
_CREATE_STAGING = text(
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} ON COMMIT DELETE ROWS "
    f"AS SELECT {_COLUMNS} FROM service_health_checks WITH NO DATA"
)
_COPY_STAGING = f"COPY {_STAGING} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_MOVE_STAGED = text(
    f"INSERT INTO service_health_checks ({_COLUMNS}) SELECT {_COLUMNS} FROM {_STAGING}"
)
# What a caller of psycopg would declare: the driver serializes the details dict itself.
_COPY_TYPES = ["text", "text", "int4", "jsonb", "text", "timestamptz"]
_INSERT_ONE = f"INSERT INTO service_health_checks ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"

Rows = list[dict[str, Any]]
# One way of writing a batch of rows on a session; the caller owns the transaction.
Method = Callable[[Session, Rows], object]


def probes(
    count: int, start: datetime, *, services: int = 50, every: timedelta = timedelta(seconds=10)
) -> Rows:
    """``count`` plain-dict checks, round-robin over ``services`` services, one each ``every``
    per service, the first at ``start``."""
    return [
        {
            "service_name": service_name(i % services, services),
            "status": "healthy" if i % 97 else "degraded",
            "latency_ms": 20 + i % 500,
            "probe_details": {"code": 200},
            "created_at": start + every * (i // services),
        }
        for i in range(count)
    ]


def _write(connection: psycopg.Connection[Any], statement: str, rows: Rows) -> None:
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types(_COPY_TYPES)
        for row in rows:
            copy.write_row(
                (
                    row["service_name"],
                    row["status"],
                    row["latency_ms"],
                    row["probe_details"],
                    None,
                    row["created_at"],
                )
            )


def superuser_copy(session: Session, rows: Rows) -> None:
    """Binary COPY straight into the table: what only a role exempt from RLS may do."""
    _write(driver(session.connection()), _COPY, rows)


def staged_copy(session: Session, rows: Rows) -> None:
    """Binary COPY into a temporary table, then one ``INSERT ... SELECT``: the best a role held
    to RLS can do by hand."""
    session.execute(_CREATE_STAGING)
    _write(driver(session.connection()), _COPY_STAGING, rows)
    session.execute(_MOVE_STAGED)


def _rolled_back(session: Session, work: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        with session.begin_nested() as attempt:
            work()
            attempt.rollback()

    return run


def bulk(
    methods: Sequence[tuple[sessionmaker[Session], Method]], rows: Rows, repeat: int
) -> list[float]:
    """Median ms of each method writing ``rows``, after one warm-up each (a connection plans
    the rollup trigger on its first insert), interleaved so drift hits all alike. Methods given
    the same factory run on one session, hence one connection."""
    sessions: dict[sessionmaker[Session], Session] = {}
    runs = [
        _rolled_back(session, partial(method, session, rows))
        for factory, method in methods
        for session in [sessions.setdefault(factory, factory())]
    ]
    timings: list[list[float]] = [[] for _ in runs]
    try:
        for run in runs:
            run()
        for _ in range(repeat):
            for run, into in zip(runs, timings, strict=True):
                into.append(median_ms(run, 1))
    finally:
        for session in sessions.values():
            session.close()
    return [statistics.median(into) for into in timings]


def one_per_transaction(
    engine: Engine, factory: sessionmaker[Session], rows: Rows
) -> tuple[float, float]:
    """Median ms per committed row of (record_check, raw psycopg) on ``engine``'s database as
    its role; these rows stay."""

    def api(row: dict[str, Any]) -> None:
        with factory.begin() as session:
            record_check(session, row)

    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as connection:

        def raw(row: dict[str, Any]) -> None:
            connection.execute(
                _INSERT_ONE,
                (
                    row["service_name"],
                    row["status"],
                    row["latency_ms"],
                    psycopg.types.json.Jsonb(row["probe_details"]),
                    None,
                    row["created_at"],
                ),
            )
            connection.commit()

        api_ms, raw_ms = [], []
        for row in rows:
            api_ms.append(median_ms(partial(api, row), 1))
            raw_ms.append(median_ms(partial(raw, row), 1))
    return statistics.median(api_ms), statistics.median(raw_ms)
