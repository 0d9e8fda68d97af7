"""Sustained load: ``python -m benchmarks.load --seconds 60 --rate 500 --batch-rate 20``.

Two open-loop streams run side by side for ``--seconds`` against the database of ``--url``
(default ``DATABASE_URL``, a superuser's; the database must already be migrated to head), as the
production role ``cim_bench_app`` (``benchmarks.role``); the superuser only checks the revision,
counts the persisted rows and cleans up:

* single: ``--rate`` calls/s of ``record_check``, each in its own transaction
  (``factory.begin()``), served by ``--workers`` threads;
* batch: ``--batch-rate`` calls/s of ``record_checks`` with ``--batch-size`` rows each, each in
  its own transaction, served by ``--batch-workers`` threads.

Calls are scheduled by the wall clock, call i of a stream at ``start + i / rate``, and latency
is measured from that scheduled time, not from when a worker got round to it: a slow call
delays the calls queued behind it and their latency shows it, instead of quietly lowering the
offered rate (coordinated omission). Per stream it prints the offered rate, the achieved calls/s
and rows/s, p50/p95/p99/max latency and the errors, and whether throughput held (achieved >= 99 %
of offered); the same goes to JSON under ``benchmarks/results/`` (git-ignored). Exit status 1
when a stream had errors, did not hold its rate, or its rows could not be removed afterwards.

Every row is written under the service-name prefix ``load-<run id>-`` and deleted at the end,
together with the rows the insert triggers derived for those services, so the script can be
pointed at a database that holds real data. It also checks that exactly the acknowledged rows
were persisted before deleting them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from benchmarks import role
from benchmarks.run import RESULTS
from cim_monitoring import (
    make_engine,
    make_session_factory,
    migrations,
    record_check,
    record_checks,
)

SERVICES = 50
# Throughput "held" when at least this share of the offered calls were served in the window.
HELD_SHARE = 0.99
# Every call is bounded, so a stuck server cannot keep the run going forever; a call that hits
# it counts as an error.
STATEMENT_TIMEOUT_MS = 30_000
# Tables the load writes: the raw checks, and what the insert triggers derive from them (the two
# rollups, each service's state and status changes). Deletes do not update those, so their rows
# for our services are removed explicitly.
_TABLES = (
    "service_health_checks",
    "service_health_hourly",
    "service_health_daily",
    "service_health_state",
    "service_health_changes",
)
_ERROR_SAMPLES = 5


@dataclass(frozen=True)
class Stream:
    """One open-loop stream: ``rate`` calls/s of ``call(session, i)``, ``rows`` rows per call,
    each in its own transaction from ``factory``."""

    mode: str
    rate: float
    rows: int
    workers: int
    call: Callable[[Session, int], object]
    factory: sessionmaker[Session]


@dataclass
class Tally:
    """What one worker saw; merged per stream after the run (no lock on the hot path)."""

    latencies_ms: list[float] = field(default_factory=list)
    completions: list[float] = field(default_factory=list)  # seconds since the start
    max_start_lag_ms: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)


class Schedule:
    """Hands out call slots in order; the next free worker takes the next slot.

    Equivalent to a dispatcher feeding an unbounded queue, without the dispatcher thread: when
    every worker is busy, due slots wait (and their latency grows) rather than being skipped.
    """

    def __init__(self, rate: float, seconds: float, start: float, hard_stop: float) -> None:
        self.interval = 1.0 / rate
        self.total = math.ceil(rate * seconds)
        self.start = start
        self.hard_stop = hard_stop
        self.dropped = 0
        self._next = 0
        self._lock = threading.Lock()

    def take(self) -> tuple[int, float] | None:
        """The next slot and its scheduled time, or None when the run is over.

        Past ``hard_stop`` (the window plus the drain grace) the slots not yet started are
        counted as dropped, which keeps the run bounded when the database cannot keep up.
        """
        with self._lock:
            if self._next >= self.total:
                return None
            if time.perf_counter() > self.hard_stop:
                self.dropped += self.total - self._next
                self._next = self.total
                return None
            slot = self._next
            self._next += 1
        return slot, self.start + slot * self.interval


def probe(prefix: str, i: int) -> dict[str, Any]:
    """Check number ``i``: round-robin over the services, mostly healthy, with a latency tail."""
    down = i % 997 == 0
    return {
        "service_name": f"{prefix}{i % SERVICES:02d}",
        "status": "down" if down else ("degraded" if i % 101 == 0 else "healthy"),
        "latency_ms": None if down else 20 + (i * 7919) % 180 + (2000 if i % 50 == 0 else 0),
        "probe_details": {"code": 503 if down else 200},
        "error_message": "connection refused" if down else None,
    }


def single_call(prefix: str) -> Callable[[Session, int], object]:
    def call(session: Session, i: int) -> object:
        return record_check(session, probe(prefix, i))

    return call


def batch_call(prefix: str, size: int) -> Callable[[Session, int], object]:
    def call(session: Session, i: int) -> object:
        # A generator, as a caller streaming probes would pass: record_checks validates it
        # chunk by chunk while the COPY streams.
        return record_checks(session, (probe(prefix, i * size + j) for j in range(size)))

    return call


def work(stream: Stream, schedule: Schedule, tally: Tally) -> None:
    while (slot := schedule.take()) is not None:
        i, scheduled = slot
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        started = time.perf_counter()
        tally.max_start_lag_ms = max(tally.max_start_lag_ms, (started - scheduled) * 1000)
        try:
            with stream.factory.begin() as session:
                stream.call(session, i)
        except Exception as exc:  # every failure is a counted error, not a crash
            name = type(exc).__name__
            tally.errors[name] += 1
            if len(tally.error_samples) < _ERROR_SAMPLES:
                tally.error_samples.append(f"{name}: {str(exc).splitlines()[0][:300]}")
            continue
        finished = time.perf_counter()
        tally.latencies_ms.append((finished - scheduled) * 1000)
        tally.completions.append(finished - schedule.start)


def percentile(ordered: list[float], p: float) -> float | None:
    """Nearest rank, as ``percentile_disc``: always a latency that was observed."""
    if not ordered:
        return None
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]


@dataclass(frozen=True)
class Result:
    mode: str
    rows_per_call: int
    workers: int
    offered_calls_per_s: float
    offered_rows_per_s: float
    scheduled_calls: int
    completed_calls: int
    errors: int
    dropped_calls: int
    elapsed_s: float
    achieved_calls_per_s: float
    achieved_rows_per_s: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    max_start_lag_ms: float
    held: bool
    worst_second_calls: int | None
    error_kinds: dict[str, int]
    error_samples: list[str]


def summarize(stream: Stream, schedule: Schedule, seconds: float, tallies: list[Tally]) -> Result:
    latencies = sorted(ms for tally in tallies for ms in tally.latencies_ms)
    completions = [t for tally in tallies for t in tally.completions]
    errors: Counter[str] = Counter()
    for tally in tallies:
        errors.update(tally.errors)
    completed = len(latencies)
    # Served over the window, or longer if a backlog was drained after it: a stream that fell
    # behind shows a lower rate even when it caught up in the grace period.
    elapsed = max(seconds, max(completions, default=0.0))
    achieved = completed / elapsed
    per_second = Counter(int(t) for t in completions if t < int(seconds))
    whole_seconds = int(seconds)
    return Result(
        mode=stream.mode,
        rows_per_call=stream.rows,
        workers=stream.workers,
        offered_calls_per_s=stream.rate,
        offered_rows_per_s=stream.rate * stream.rows,
        scheduled_calls=schedule.total,
        completed_calls=completed,
        errors=sum(errors.values()),
        dropped_calls=schedule.dropped,
        elapsed_s=round(elapsed, 3),
        achieved_calls_per_s=round(achieved, 2),
        achieved_rows_per_s=round(achieved * stream.rows, 1),
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else None,
        max_start_lag_ms=max((tally.max_start_lag_ms for tally in tallies), default=0.0),
        held=achieved >= HELD_SHARE * stream.rate,
        worst_second_calls=(
            min(per_second.get(s, 0) for s in range(whole_seconds)) if whole_seconds else None
        ),
        error_kinds=dict(errors),
        error_samples=[sample for tally in tallies for sample in tally.error_samples][
            :_ERROR_SAMPLES
        ],
    )


def check_migrated(engine: Engine) -> None:
    """Exit with a clear message unless the database is at the head revision."""
    heads = set(migrations.heads())
    current = set(migrations.current(engine))
    if current != heads:
        sys.exit(
            f"the database is not migrated (at {sorted(current) or 'no revision'}, head is "
            f"{sorted(heads)}): run `DATABASE_URL=... cim-monitoring migrate` first; "
            "this script does not migrate, so it can be pointed at a database it must not alter"
        )


def warm_up(
    factory: sessionmaker[Session], connections: int, calls: list[Callable[[Session, int], object]]
) -> None:
    """Open every pooled connection and make ``calls`` once on each, rolled back, so connection
    setup and first-use compilation do not land in the measured latencies.

    PL/pgSQL plans the rollup trigger's statements on a connection's first insert and keeps
    those plans; the statements are written so that a plan made for one row serves a batch as
    well (``--shared-pool`` makes every connection insert a single row first; see also
    ``python -m benchmarks.trigger_plans``).
    """
    sessions = [factory() for _ in range(connections)]
    try:
        # Hold them all at once, or the pool would hand the same connection back each time.
        for session in sessions:
            for call in calls:
                call(session, 0)
            session.rollback()
    finally:
        for session in sessions:
            session.close()


def persisted(engine: Engine, prefix: str) -> int:
    with engine.connect() as connection:
        count: int = connection.execute(
            text("SELECT count(*) FROM service_health_checks WHERE service_name LIKE :p"),
            {"p": prefix + "%"},
        ).scalar_one()
    return count


def clean_up(engine: Engine, prefix: str) -> tuple[dict[str, int], str | None]:
    """Delete this run's rows; return the counts per table, or the reason it failed.

    One transaction: either every table is cleaned or nothing is, so a failure leaves the
    rollups consistent with the raw rows for anyone inspecting what was left behind.
    """
    deleted: dict[str, int] = {}
    try:
        with engine.begin() as connection:
            for table in _TABLES:
                result = connection.execute(
                    text(f"DELETE FROM {table} WHERE service_name LIKE :p"),  # constant names
                    {"p": prefix + "%"},
                )
                deleted[table] = result.rowcount
    except Exception as exc:  # reported, and the exit status says so
        return deleted, f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return deleted, None


def run(streams: list[Stream], seconds: float, grace: float) -> list[Result]:
    # Start a little in the future so every worker is waiting when slot 0 falls due.
    start = time.perf_counter() + 0.2
    hard_stop = start + seconds + grace
    plans = [
        (
            stream,
            Schedule(stream.rate, seconds, start, hard_stop),
            [Tally() for _ in range(stream.workers)],
        )
        for stream in streams
    ]
    threads = [
        threading.Thread(target=work, args=(stream, schedule, tally), name=stream.mode, daemon=True)
        for stream, schedule, tallies in plans
        for tally in tallies
    ]
    for thread in threads:
        thread.start()
    # Bounded: slots stop at hard_stop and each call is bounded by statement_timeout; the join
    # timeout is a last resort against a hang outside the database (daemon threads then die
    # with the process).
    give_up = hard_stop + STATEMENT_TIMEOUT_MS / 1000 + 10
    next_report = start + 10
    while any(thread.is_alive() for thread in threads) and time.perf_counter() < give_up:
        time.sleep(0.2)
        if time.perf_counter() >= next_report:
            done = ", ".join(
                f"{stream.mode} {sum(len(t.latencies_ms) for t in tallies)}"
                for stream, _, tallies in plans
            )
            print(f"  {next_report - start:4.0f} s: calls done: {done}", flush=True)
            next_report += 10
    stuck = [thread for thread in threads if thread.is_alive()]
    if stuck:
        print(f"warning: {len(stuck)} worker(s) still running; reporting without them")
    return [summarize(stream, schedule, seconds, tallies) for stream, schedule, tallies in plans]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(results: list[Result]) -> str:
    header = (
        "mode",
        "offered/s",
        "calls/s",
        "rows/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "errors",
        "dropped",
        "held",
    )
    lines = [
        (
            f"{r.mode} ({r.rows_per_call} row{'s' if r.rows_per_call > 1 else ''})",
            f"{r.offered_calls_per_s:g}",
            f"{r.achieved_calls_per_s:.1f}",
            f"{r.achieved_rows_per_s:.0f}",
            _ms(r.p50_ms),
            _ms(r.p95_ms),
            _ms(r.p99_ms),
            _ms(r.max_ms),
            str(r.errors),
            str(r.dropped_calls),
            "yes" if r.held else "NO",
        )
        for r in results
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.rjust(width) if i else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in [header, *lines]
    )


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url", default=os.environ.get("DATABASE_URL"), help="default: DATABASE_URL"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the window")
    parser.add_argument("--rate", type=float, default=500.0, help="record_check calls/s; 0: off")
    parser.add_argument("--workers", type=int, default=4, help="threads for record_check")
    parser.add_argument(
        "--batch-rate", type=float, default=20.0, help="record_checks calls/s; 0: off"
    )
    parser.add_argument("--batch-size", type=int, default=500, help="rows per record_checks")
    parser.add_argument("--batch-workers", type=int, default=2, help="threads for record_checks")
    parser.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="seconds after the window to drain a backlog; what is still queued is dropped",
    )
    parser.add_argument(
        "--shared-pool",
        action="store_true",
        help="both streams share one pool (each connection makes a single-row insert first)",
    )
    parser.add_argument("--output", type=Path, help="JSON file (default under results/)")
    arguments = parser.parse_args()
    if not arguments.url:
        parser.error(
            "give --url or set DATABASE_URL to a database migrated to head "
            "(DATABASE_URL=... .venv/bin/alembic upgrade head)"
        )
    if arguments.seconds <= 0 or arguments.grace < 0:
        parser.error("--seconds must be positive and --grace not negative")
    if arguments.rate < 0 or arguments.batch_rate < 0 or arguments.batch_size < 1:
        parser.error("rates must not be negative and --batch-size must be at least 1")
    if arguments.rate == 0 and arguments.batch_rate == 0:
        parser.error("nothing to do: --rate and --batch-rate are both 0")
    if arguments.workers < 1 or arguments.batch_workers < 1:
        parser.error("--workers and --batch-workers must be at least 1")
    return arguments


def _load_engine(url: str, connections: int) -> Engine:
    return role.app_engine(
        url,
        # One connection per worker, made up front: the pool is never what a call waits for.
        pool_size=connections,
        max_overflow=0,
        connect_args={"options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"},
    )


def main() -> int:
    arguments = _arguments()
    # A fresh prefix per run: concurrent or interrupted runs never delete each other's rows,
    # and the application's own services (never named like this) are never touched.
    run_id = uuid.uuid4().hex[:8]
    prefix = f"load-{run_id}-"
    wanted = [
        (mode, rate, rows, workers, call)
        for mode, rate, rows, workers, call in (
            ("single", arguments.rate, 1, arguments.workers, single_call(prefix)),
            (
                "batch",
                arguments.batch_rate,
                arguments.batch_size,
                arguments.batch_workers,
                batch_call(prefix, arguments.batch_size),
            ),
        )
        if rate > 0
    ]
    # Setup, the migration check, the row count and the clean-up: not part of the load.
    admin = make_engine(arguments.url, pool_size=1, max_overflow=0)
    check_migrated(admin)
    engines: list[Engine] = []
    if arguments.shared_pool:
        # One pool for both streams, as in an application process that serves probes one at a
        # time and also bulk-imports: every connection has made a single-row insert first.
        engine = _load_engine(arguments.url, sum(w for _, _, _, w, _ in wanted))
        engines.append(engine)
        factory = make_session_factory(engine)
        warm_up(factory, sum(w for _, _, _, w, _ in wanted), [c for *_, c in wanted])
        streams = [Stream(m, r, n, w, c, factory) for m, r, n, w, c in wanted]
    else:
        # A pool per stream, as when bulk ingest runs in its own process or pool.
        streams = []
        for mode, rate, rows, workers, call in wanted:
            engine = _load_engine(arguments.url, workers)
            engines.append(engine)
            factory = make_session_factory(engine)
            warm_up(factory, workers, [call])
            streams.append(Stream(mode, rate, rows, workers, call, factory))
    offered = ", ".join(
        f"{s.mode} {s.rate:g}/s x {s.rows} row(s) on {s.workers} worker(s)" for s in streams
    )
    pools = "one shared pool" if arguments.shared_pool else "a pool per stream"
    print(f"load run {run_id}: {arguments.seconds:g} s, {offered}; {pools}", flush=True)

    results: list[Result] = []
    try:
        results = run(streams, arguments.seconds, arguments.grace)
        stored = persisted(admin, prefix)
    except BaseException:
        # Interrupted (Ctrl-C) or broken: still remove what was written, then re-raise.
        traceback.print_exc()
        deleted, failure = clean_up(admin, prefix)
        print(f"cleaned up after interruption: {deleted}; failure: {failure}")
        raise
    acknowledged = sum(r.completed_calls * r.rows_per_call for r in results)
    for engine in engines:
        engine.dispose()
    deleted, failure = clean_up(admin, prefix)
    with admin.connect() as connection:
        server = connection.execute(text("SHOW server_version")).scalar_one()
    admin.dispose()

    print(table(results))
    print(
        f"rows acknowledged {acknowledged}, persisted {stored}"
        + ("" if stored == acknowledged else "  MISMATCH")
    )
    for result in results:
        for sample in result.error_samples:
            print(f"  {result.mode} error: {sample}")
    if failure:
        print(f"CLEAN-UP FAILED, rows under '{prefix}' are left behind: {failure}")
    else:
        print(f"cleaned up: deleted {deleted}")

    output = arguments.output or RESULTS / f"load-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "run_id": run_id,
        "seconds": arguments.seconds,
        "grace": arguments.grace,
        "shared_pool": arguments.shared_pool,
        "postgresql": server,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "finished_at": datetime.now(UTC).isoformat(),
        "rows_acknowledged": acknowledged,
        "rows_persisted": stored,
        "cleanup": {"deleted": deleted, "failure": failure},
        "results": [asdict(result) for result in results],
    }
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"written to {output}")

    failed = any(r.errors or not r.held for r in results) or stored != acknowledged or failure
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
