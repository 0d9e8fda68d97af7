"""Ingest: ``record_checks`` against raw binary COPY of the same rows, and ``record_check`` in its
own transaction against raw psycopg, one row per transaction. Both sides write the same table,
so both pay the same index and rollup-trigger cost; the bulk runs are rolled back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import psycopg
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.measure import median_ms
from cim_monitoring import record_check, record_checks
from cim_monitoring.vocabulary import HEALTH_CHECK_COLUMNS

_COLUMNS = ", ".join(HEALTH_CHECK_COLUMNS)
_COPY = f"COPY service_health_checks ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
# What a caller of psycopg would declare: the driver serializes the details dict itself.
_COPY_TYPES = ["text", "text", "int4", "jsonb", "text", "timestamptz"]
_INSERT_ONE = f"INSERT INTO service_health_checks ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"


def probes(count: int, start: datetime) -> list[dict[str, Any]]:
    """``count`` plain-dict checks of 50 services, one every 10 s each, from ``start``."""
    return [
        {
            "service_name": f"svc-{i % 50:02d}",
            "status": "healthy" if i % 97 else "degraded",
            "latency_ms": 20 + i % 500,
            "probe_details": {"code": 200},
            "created_at": start + timedelta(seconds=10 * (i // 50)),
        }
        for i in range(count)
    ]


def _raw_copy(session: Session, rows: list[dict[str, Any]]) -> None:
    connection = session.connection().connection.driver_connection
    with connection.cursor() as cursor, cursor.copy(_COPY) as copy:
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


def _rolled_back(session: Session, work: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        with session.begin_nested() as attempt:
            work()
            attempt.rollback()

    return run


def bulk(
    factory: sessionmaker[Session], rows: list[dict[str, Any]], repeat: int
) -> tuple[float, float]:
    """Median ms of (record_checks, raw COPY), interleaved so drift hits both alike."""
    api, raw = [], []
    with factory() as session:
        for _ in range(repeat):
            api.append(median_ms(_rolled_back(session, lambda: record_checks(session, rows)), 1))
            raw.append(median_ms(_rolled_back(session, lambda: _raw_copy(session, rows)), 1))
        session.rollback()
    return sorted(api)[len(api) // 2], sorted(raw)[len(raw) // 2]


def one_per_transaction(
    engine: Engine, factory: sessionmaker[Session], rows: list[dict[str, Any]]
) -> tuple[float, float]:
    """Median ms per committed row of (record_check, raw psycopg); these rows stay."""

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
    return sorted(api_ms)[len(api_ms) // 2], sorted(raw_ms)[len(raw_ms) // 2]
