"""Run every benchmark in one go: ``python -m benchmarks.run --rows 2160000``.

Builds the data set in the database of ``--database-url`` (default ``DATABASE_URL``, a
superuser's; the database is migrated to head and its monitoring tables are EMPTIED), times
each operation through the API and its baseline as the production role ``cim_bench_app``
(``benchmarks.role``), prints the table and writes it as JSON (default
``benchmarks/results/run-<rows>.json``, git-ignored). ``--quick`` is a sanity run on 216k rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from benchmarks import ingest, role
from benchmarks.measure import machine_speed
from benchmarks.operations import Row, queries, run_purge, run_query
from cim_monitoring import make_engine, make_session_factory, migrations, record_checks
from workbench import fleet

RESULTS = Path(__file__).resolve().parent / "results"


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--rows", type=int, default=2_160_000, help="health checks to generate")
    parser.add_argument("--quick", action="store_true", help="216k rows, fewer repeats")
    parser.add_argument("--output", type=Path, help="JSON file (default under results/)")
    arguments = parser.parse_args()
    if not arguments.database_url:
        parser.error("give --database-url or set DATABASE_URL")
    if arguments.quick:
        arguments.rows = 216_000
    return arguments


def _met(met: bool | None) -> str:
    return "-" if met is None else "yes" if met else "NO"


def table(rows: list[Row]) -> str:
    header = ("operation", "median", "baseline", "ratio", "target", "met", "plan")
    lines = [
        (
            row.operation,
            f"{row.median_ms:.2f} ms",
            f"{row.baseline_ms:.2f} ms",
            f"{row.ratio:.2f}x",
            row.target,
            _met(row.met),
            row.plan,
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False))
        + "  "
        + line[-1]
        for line in [header, *lines]
    )


def write(
    output: Path | None, name: str, engine: Engine, results: list[Row], **about: object
) -> None:
    """``results`` as JSON, with ``about`` and what they were measured on, to ``output``
    (default ``results/<name>.json``)."""
    output = output or RESULTS / f"{name}.json"
    with engine.connect() as connection:
        server = connection.execute(text("SHOW server_version")).scalar_one()
    document = {
        **about,
        "postgresql": server,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "finished_at": datetime.now(UTC).isoformat(),
        "results": [{**asdict(row), "ratio": row.ratio} for row in results],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"written to {output}")


def ingest_rows(
    admin: sessionmaker[Session], factory: sessionmaker[Session], rows: ingest.Rows, repeat: int
) -> list[Row]:
    """``record_checks`` as the role of ``factory`` against the best raw method open to that
    role and against a superuser's (``admin``) binary COPY, the ceiling."""
    api_ms, staged_ms, copy_ms = ingest.bulk(
        [(factory, record_checks), (factory, ingest.staged_copy), (admin, ingest.superuser_copy)],
        rows,
        repeat,
    )
    name = f"record_checks {len(rows) // 1000}k"
    return [
        Row(
            f"{name} vs staged COPY",
            api_ms,
            staged_ms,
            ">= 0.9x",
            staged_ms / api_ms >= 0.9,
            "role: temp-table binary COPY + one INSERT ... SELECT (both sides)",
        ),
        Row(
            f"{name} vs superuser COPY",
            api_ms,
            copy_ms,
            "report",
            None,
            "superuser: binary COPY into the table, RLS bypassed",
        ),
    ]


def main() -> None:
    arguments = _arguments()
    quick = arguments.quick
    superuser = make_engine(arguments.database_url)
    with superuser.begin() as connection:
        migrations.upgrade(connection)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    data = fleet.build(superuser, rows=arguments.rows, end=end)
    print(f"data set: {data.rows} checks over {data.days:.1f} days, built")
    # One connection: every API call and its baseline share it, as the role.
    engine = role.app_engine(arguments.database_url, pool_size=1, max_overflow=0)
    factory = make_session_factory(engine)

    scale = machine_speed(factory)
    print(f"machine speed: {scale:.2f} times as long as where the targets were set")
    results = [
        run_query(engine, factory, query, 20 if quick else 50) for query in queries(data, scale)
    ]
    bulk_rows = ingest.probes(20_000 if quick else 200_000, end)
    results += ingest_rows(make_session_factory(superuser), factory, bulk_rows, 3 if quick else 5)
    single_rows = ingest.probes(100 if quick else 400, end + timedelta(days=1))
    api_ms, raw_ms = ingest.one_per_transaction(engine, factory, single_rows)
    results.append(
        Row(
            "record_check, own transaction",
            api_ms,
            raw_ms,
            ">= 0.5x raw psycopg",
            raw_ms / api_ms >= 0.5,
            "INSERT ... RETURNING + rollup trigger, COMMIT",
        )
    )
    results.append(run_purge(engine, factory, data, 3, scale))
    engine.dispose()
    print(table(results))
    write(
        arguments.output,
        f"run-{arguments.rows}",
        superuser,
        results,
        rows=data.rows,
        days=data.days,
        speed=scale,
    )


if __name__ == "__main__":
    main()
