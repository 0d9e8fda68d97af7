"""Rollup trigger plans: ``python -m benchmarks.trigger_plans --url ...``.

PL/pgSQL plans the statements of the rollup trigger ``service_health_rollup()`` on a
connection's first insert and keeps those plans for the life of the connection, whatever the
size of the later transition tables. This script measures, on fresh connections, how long a
``record_checks`` batch takes when the connection's first insert was a single row ("batch after
single") and when it was a batch ("batch first"), and prints the ratio: near 1.0 when the plans
do not depend on the first statement. It also measures ``record_check`` in its own transaction
against raw psycopg INSERT + COMMIT (the benchmark's ">= 0.5x" target), since the trigger runs
on every single-row insert too.

Everything is timed as the production role ``cim_bench_app`` (``benchmarks.role``); ``--url`` is
a superuser's, which checks the revision and cleans up. The database must be migrated to head.
Rows go under a per-run service prefix and are deleted,
with their rollup rows, at the end; the figures also go to JSON under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from benchmarks import ingest, role
from benchmarks.load import check_migrated, clean_up, probe
from benchmarks.run import RESULTS
from cim_monitoring import make_engine, make_session_factory, record_check, record_checks


def batch_series(
    engine: Engine, prefix: str, *, single_first: bool, batches: int, size: int
) -> list[float]:
    """Milliseconds per committed ``record_checks`` of ``size`` rows, on one fresh connection
    whose first insert is one row (``single_first``) or the first of the batches."""
    timings = []
    with engine.connect() as connection, Session(bind=connection) as session:
        if single_first:
            record_check(session, probe(prefix, 0))
            session.commit()
        for b in range(batches):
            started = time.perf_counter()
            record_checks(session, (probe(prefix, (b + 1) * size + j) for j in range(size)))
            session.commit()
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.trigger_plans",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url", default=os.environ.get("DATABASE_URL"), help="default: DATABASE_URL"
    )
    parser.add_argument("--size", type=int, default=500, help="rows per batch")
    parser.add_argument("--batches", type=int, default=10, help="batches per connection")
    parser.add_argument(
        "--connections", type=int, default=5, help="fresh connections per order, interleaved"
    )
    parser.add_argument("--singles", type=int, default=400, help="single-row transactions")
    parser.add_argument("--output", type=Path, help="JSON file (default under results/)")
    arguments = parser.parse_args()
    if not arguments.url:
        parser.error("give --url or set DATABASE_URL to a database migrated to head")
    return arguments


def main() -> int:
    arguments = _arguments()
    prefix = f"load-{uuid.uuid4().hex[:8]}-"
    admin = make_engine(arguments.url, pool_size=1, max_overflow=0)
    check_migrated(admin)
    # A new server connection per series: PL/pgSQL plans are per connection.
    engine = role.app_engine(arguments.url, poolclass=NullPool)
    after_single: list[float] = []
    first: list[float] = []
    try:
        for _ in range(arguments.connections):
            # Interleaved, so drift and other load on the server hit both orders alike.
            for single_first, into in ((True, after_single), (False, first)):
                into += batch_series(
                    engine,
                    prefix,
                    single_first=single_first,
                    batches=arguments.batches,
                    size=arguments.size,
                )
        pooled = role.app_engine(arguments.url, pool_size=1, max_overflow=0)
        rows: list[dict[str, Any]] = [
            {**probe(prefix, i), "created_at": datetime.now(UTC) + timedelta(seconds=i)}
            for i in range(arguments.singles)
        ]
        single_ms, raw_ms = ingest.one_per_transaction(pooled, make_session_factory(pooled), rows)
        pooled.dispose()
    finally:
        engine.dispose()
        deleted, failure = clean_up(admin, prefix)
        with admin.connect() as connection:
            server = connection.execute(text("SHOW server_version")).scalar_one()
        admin.dispose()

    after_ms = statistics.median(after_single)
    first_ms = statistics.median(first)
    print(
        f"record_checks x {arguments.size} rows, median of {len(first)} per order "
        f"({arguments.connections} fresh connections x {arguments.batches} batches):"
    )
    print(f"  batch after a single-row insert  {after_ms:8.1f} ms")
    print(f"  batch first                      {first_ms:8.1f} ms")
    print(f"  ratio after-single / first       {after_ms / first_ms:8.2f}")
    print(f"record_check, own transaction, median of {arguments.singles}:")
    print(f"  record_check                     {single_ms:8.2f} ms")
    print(f"  raw psycopg INSERT + COMMIT      {raw_ms:8.2f} ms")
    print(f"  ratio raw / record_check         {raw_ms / single_ms:8.2f}  (target >= 0.5)")
    print(f"cleaned up: {deleted}" if not failure else f"CLEAN-UP FAILED: {failure}")

    output = arguments.output or RESULTS / f"trigger-plans-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "postgresql": server,
        "finished_at": datetime.now(UTC).isoformat(),
        "batch_size": arguments.size,
        "batch_after_single_ms": after_ms,
        "batch_first_ms": first_ms,
        "after_single_over_first": after_ms / first_ms,
        "record_check_ms": single_ms,
        "raw_insert_commit_ms": raw_ms,
        "raw_over_record_check": raw_ms / single_ms,
        "timings_ms": {"after_single": after_single, "first": first},
    }
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"written to {output}")
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
