"""Bulk ingest versus raw COPY, and the plan of latest_status with a long-silent service.

Usage: DATABASE_URL=postgresql://... python benchmarks/repository.py [rows]
The database must be migrated to head; everything runs in one transaction that is rolled back.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from cim_monitoring import make_engine, make_session_factory, record_checks
from cim_monitoring.repository.checks import _COPY, _COPY_TYPES
from cim_monitoring.repository.queries import _LATEST_ALL

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def rows(count: int) -> list[dict[str, Any]]:
    return [
        {
            "service_name": f"svc{i % 20}",
            "status": "healthy",
            "latency_ms": i % 500,
            "probe_details": {"code": 200},
            "created_at": T0 + timedelta(seconds=i),
        }
        for i in range(count)
    ]


def raw_copy(session: Session, batch: list[dict[str, Any]]) -> None:
    connection = session.connection().connection.driver_connection
    with connection.cursor() as cursor, cursor.copy(_COPY) as copy:
        copy.set_types(_COPY_TYPES)
        for r in batch:
            copy.write_row(
                (
                    r["service_name"],
                    r["status"],
                    r["latency_ms"],
                    r["probe_details"],
                    None,
                    r["created_at"],
                )
            )


def best_of(session: Session, work: Callable[[], object], repeat: int = 3) -> float:
    timings = []
    for _ in range(repeat):
        with session.begin_nested() as attempt:
            started = time.perf_counter()
            work()
            timings.append(time.perf_counter() - started)
            attempt.rollback()
    return min(timings)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    batch = rows(count)
    with make_session_factory(make_engine())() as session:
        raw = best_of(session, lambda: raw_copy(session, batch))
        api = best_of(session, lambda: record_checks(session, batch))
        print(f"{count} rows: raw COPY {raw:.3f}s, record_checks {api:.3f}s, ratio {raw / api:.2f}")

        record_checks(session, batch)
        silent = {"service_name": "silent", "status": "down", "created_at": T0 - timedelta(weeks=6)}
        record_checks(session, [silent])
        session.execute(text("ANALYZE service_health_checks"))
        plan = session.execute(text("EXPLAIN (ANALYZE, COSTS OFF) " + str(_LATEST_ALL)))
        print("\n".join(plan.scalars()))
        session.rollback()


if __name__ == "__main__":
    main()
