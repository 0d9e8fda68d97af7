"""Purging a whole expired day, as the production role: ``python -m benchmarks.retention_days``.

For each ``--services`` size (default 1,000 and 5,000: one check a minute each, 1.44M and 7.2M
rows a day), in the database of ``--database-url`` (default ``DATABASE_URL``, a superuser's; it
is migrated to head and its monitoring tables are EMPTIED), one day 40 days back is loaded into
its own partition and VACUUM ANALYZEd (as autovacuum would have by then), then purged as
``cim_bench_app`` (``benchmarks.role``) twice in the same run:

- ``purge_expired``: the day's partition is dropped whole;
- the baseline, the purge before daily partitions: batched ``DELETE`` of 5,000 rows a batch,
  oldest first, each batch its own transaction, over the same rows reloaded.

Printed: rows, wall time of each, the ratio, and the dead tuples each leaves behind.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, text

from benchmarks import role
from cim_monitoring import make_engine, migrations, purge_expired
from cim_monitoring.partitions import add_partitions
from workbench.fleet import empty

DAY = timedelta(days=1)
BATCH = 5000
# The rows of one day straight into its partition (the triggers' rollups are not what is
# measured here): one check a minute per service.
_LOAD = text(
    """
    INSERT INTO {partition} (id, service_name, status, latency_ms, created_at)
    SELECT s * 1440 + m, 'svc-' || lpad(s::text, 5, '0'),
           CASE WHEN (s + m) % 97 = 0 THEN 'down' ELSE 'healthy' END, 20 + (s + m) % 180,
           :day + m * interval '1 minute' + s * interval '1 millisecond'
      FROM generate_series(0, :services - 1) AS s, generate_series(0, 1439) AS m
    """
)
_BATCH_DELETE = text(
    """
    DELETE FROM service_health_checks
     WHERE created_at < :cutoff
       AND (id, created_at) IN (
           SELECT id, created_at FROM service_health_checks WHERE created_at < :cutoff
            ORDER BY created_at LIMIT :batch FOR UPDATE SKIP LOCKED)
    """
)
_DEAD = text("SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE relname LIKE :p")


def load(admin: Engine, day: date, services: int) -> str:
    partition = f"service_health_checks_p{day:%Y%m%d}"
    with admin.begin() as connection:
        empty(connection)
        add_partitions(connection, day, days_ahead=0)
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        connection.execute(
            text(_LOAD.text.format(partition=partition)), {"day": midnight, "services": services}
        )
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f"VACUUM ANALYZE {partition}"))
    return partition


def dead_tuples(admin: Engine, partition: str) -> int:
    time.sleep(1.5)  # the statistics of the deleting backends reach pg_stat_* within a second
    with admin.connect() as connection:
        return int(connection.execute(_DEAD, {"p": partition}).scalar_one())


def batched_delete(app: Engine, cutoff: datetime) -> int:
    total = 0
    while True:
        with app.begin() as connection:
            deleted = connection.execute(_BATCH_DELETE, {"cutoff": cutoff, "batch": BATCH}).rowcount
        total += deleted
        if deleted < BATCH:
            return total


def measure(admin: Engine, app: Engine, services: int) -> None:
    with admin.connect() as connection:
        today = connection.execute(text("SELECT CAST(now() AT TIME ZONE 'UTC' AS date)")).scalar()
    day = today - 40 * DAY
    cutoff = datetime(day.year, day.month, day.day, tzinfo=UTC) + DAY
    partition = load(admin, day, services)
    started = time.perf_counter()
    result = purge_expired(app, now=cutoff + timedelta(days=30))
    dropped_s = time.perf_counter() - started
    dropped_dead = dead_tuples(admin, partition)
    partition = load(admin, day, services)
    started = time.perf_counter()
    deleted = batched_delete(app, cutoff)
    deleted_s = time.perf_counter() - started
    deleted_dead = dead_tuples(admin, partition)
    print(
        f"{services:>6} services, {result.health_checks:>9,} rows: purge_expired (drop) "
        f"{dropped_s * 1000:8.0f} ms, {dropped_dead} dead tuples | batched DELETE "
        f"{deleted:,} rows {deleted_s * 1000:8.0f} ms, {deleted_dead:,} dead tuples | "
        f"DELETE / drop = {deleted_s / dropped_s:.0f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--services", type=int, nargs="+", default=[1000, 5000])
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url or DATABASE_URL is required")
    admin = make_engine(args.database_url)
    migrations.upgrade(admin)
    app = role.app_engine(args.database_url)
    try:
        for services in args.services:
            measure(admin, app, services)
    finally:
        app.dispose()
        admin.dispose()


if __name__ == "__main__":
    main()
