"""Fleet scale, as the production role: ``python -m benchmarks.fleet --services 5000``.

Builds the data set of issue #11 (``workbench.fleet_scale``: ``--services`` services, hourly
checks for days 2-30 and one every 5 minutes over the last day, some flapping, a few down at the
end) in the database of ``--database-url`` (default ``DATABASE_URL``, a superuser's; it is
migrated to head and its monitoring tables are EMPTIED), or with ``--reuse`` keeps the data
already there when it has the size of that data set. Then it times, as ``cim_bench_app``
(``benchmarks.role``), each operation through the API against a baseline measured in the same
run on the same connection, over windows that end at an arbitrary minute: medians over
``--repeat`` calls after a warm-up. The table is printed and written as JSON (default
``benchmarks/results/fleet-<services>.json``, git-ignored).
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from benchmarks import ingest, role
from benchmarks.measure import REFERENCE_FETCH_MS, machine_speed
from benchmarks.operations import DAY, Query, run_query, stats
from benchmarks.run import ingest_rows, table, write
from cim_monitoring import (
    incidents,
    latest_status,
    make_engine,
    make_session_factory,
    migrations,
    status_changes,
)
from cim_monitoring.schemas import ServiceStatus
from workbench import fleet_scale
from workbench.fleet import service_name, vacuum_analyze

# Issue #11's targets hold for this many services; other sizes are reported, not judged.
TARGET_SERVICES = 5000
INGEST_ROWS = 100_000
# Interleaved rounds of the three ingest methods; a round takes 3-6 s at 5,000 services.
INGEST_REPEAT = 7

# The bare fetch latest_status is held to: the same rows from a plain table, same session.
_PLAIN = "benchmark_latest"
_COLUMNS = ", ".join(ServiceStatus.model_fields)
_CREATE_PLAIN = text(
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_PLAIN} "
    f"AS SELECT {_COLUMNS} FROM service_health_checks WITH NO DATA"
)
_FILL_PLAIN = text(
    f"INSERT INTO {_PLAIN} ({_COLUMNS}) "
    f"VALUES ({', '.join(f':{name}' for name in ServiceStatus.model_fields)})"
)
_FETCH_PLAIN = text(f"SELECT {_COLUMNS} FROM {_PLAIN}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--services", type=int, default=5000)
    parser.add_argument("--reuse", action="store_true", help="keep a data set of this size")
    parser.add_argument("--repeat", type=int, default=11, help="timed API calls per operation")
    parser.add_argument("--output", type=Path, help="JSON file (default under results/)")
    arguments = parser.parse_args()
    if not arguments.database_url:
        parser.error("give --database-url or set DATABASE_URL")
    if arguments.services < 1 or arguments.repeat < 1:
        parser.error("--services and --repeat must be at least 1")
    return arguments


def _data(superuser: Engine, services: int, reuse: bool) -> fleet_scale.FleetData:
    # Data built under an older revision may lack what a newer one derives from the checks.
    revisions = set(migrations.current(superuser))
    migrated = bool(revisions) and revisions != set(migrations.heads())
    with superuser.begin() as connection:
        migrations.upgrade(connection)
    found = fleet_scale.existing(superuser, services) if reuse and not migrated else None
    if found is not None:
        print(f"reusing the data set: {found.rows:,} checks, the newest at {found.end:%H:%M}")
        return found
    if reuse:
        print(
            "the schema changed since the data set was built: building it again"
            if migrated
            else "no data set of that size in the database: building it"
        )
    started = time.perf_counter()
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    data = fleet_scale.build(superuser, services=services, end=end)
    print(f"built {data.rows:,} checks in {time.perf_counter() - started:.0f} s")
    return data


def _plain_copy(factory: sessionmaker[Session]) -> None:
    """The rows latest_status returns, in a temporary table of the session's connection."""
    with factory.begin() as session:
        session.execute(_CREATE_PLAIN)
        session.execute(text(f"TRUNCATE {_PLAIN}"))
        session.execute(_FILL_PLAIN, [row.model_dump() for row in latest_status(session)])


def queries(data: fleet_scale.FleetData, scale: float) -> list[Query]:
    """The API calls timed, each with its baseline; a new operation is one more line.
    ``scale``: the machine's speed (``measure.machine_speed``), by which the millisecond
    targets are multiplied."""
    end, judged = data.window_end, data.services == TARGET_SERVICES
    # A service that flaps (fleet_scale.FLAPPING_EVERY): its month holds dozens of changes.
    flapping = service_name(fleet_scale.FLAPPING_EVERY + 7, data.services)
    return [
        Query("latest_status", latest_status, lambda s: s.execute(_FETCH_PLAIN).all(), within=2),
        stats("service_stats 24 h", end - DAY, end, limit_ms=200 if judged else None, scale=scale),
        stats(
            "service_stats 30 d", end - 30 * DAY, end, limit_ms=400 if judged else None, scale=scale
        ),
        Query("incidents 24 h", lambda s: incidents(s, start=end - DAY, end=end), None),
        Query("incidents 30 d", lambda s: incidents(s, start=end - 30 * DAY, end=end), None),
        Query(
            "status_changes 30 d, one service",
            lambda s: status_changes(s, flapping, start=end - 30 * DAY, end=end),
            None,
        ),
    ]


def main() -> None:
    arguments = _arguments()
    superuser = make_engine(arguments.database_url)
    data = _data(superuser, arguments.services, arguments.reuse)
    # One connection: the API, the plain table and every baseline share it, as the role.
    engine = role.app_engine(arguments.database_url, pool_size=1, max_overflow=0)
    factory = make_session_factory(engine)
    started = time.perf_counter()
    _plain_copy(factory)
    scale = machine_speed(factory)
    results = [
        run_query(engine, factory, query, arguments.repeat) for query in queries(data, scale)
    ]
    # Every service, 1 hour past the newest check; the runs are rolled back.
    every = timedelta(hours=1) / max(INGEST_ROWS // data.services, 1)
    rows = ingest.probes(
        INGEST_ROWS, data.end + timedelta(minutes=1), services=data.services, every=every
    )
    results += ingest_rows(make_session_factory(superuser), factory, rows, INGEST_REPEAT)
    seconds = time.perf_counter() - started
    engine.dispose()
    # The rolled-back ingest left dead rows; the next run (--reuse) should not read them.
    vacuum_analyze(superuser)
    print(
        f"{data.services:,} services, {data.rows:,} checks, windows ending {data.window_end:%H:%M} "
        f"UTC; measured in {seconds:.0f} s as {role.ROLE}"
    )
    print(
        f"machine speed: {scale:.2f} times as long as where the targets were set "
        f"(fetching 5,000 rows took {scale * REFERENCE_FETCH_MS:.2f} ms, there "
        f"{REFERENCE_FETCH_MS:g} ms): millisecond targets are multiplied by it"
    )
    print(table(results))
    write(
        arguments.output,
        f"fleet-{data.services}",
        superuser,
        results,
        services=data.services,
        rows=data.rows,
        window_end=data.window_end.isoformat(),
        role=role.ROLE,
        measured_s=seconds,
        speed=scale,
    )
    superuser.dispose()


if __name__ == "__main__":
    main()
