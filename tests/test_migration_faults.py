"""Migrations under faults: a blocking reader, a revision that fails, a migration in progress.

Each test gets a fresh database on the session's server; ``alembic upgrade head`` runs as the
operator runs it (a subprocess with ``DATABASE_URL``) where its exit and message are the point.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic_cli import (
    ROOT,
    alembic_command,
    alembic_env,
    history_with_extra_revision,
    run_alembic,
    upgrade_history,
)
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from cim_monitoring import MigrationError, make_engine, migrations
from cim_monitoring.migrations import MIGRATION_LOCK_KEY, VERSION_TABLE
from cim_monitoring.models import Base

[HEAD] = migrations.heads()
HISTORY = migrations.history()
FIRST = HISTORY[0]
LOCK_TIMEOUT_MESSAGE = (
    "cim-monitoring: a migration gave up waiting for a table lock (lock_timeout): "
    "canceling statement due to lock timeout; a long-running transaction holds it, "
    "retry when it ends"
)


@pytest.fixture
def engine(empty_database_url: URL) -> Iterator[Engine]:
    engine = make_engine(empty_database_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def _alembic(url: URL, *args: str, lock_wait: float = 30) -> subprocess.CompletedProcess[str]:
    return run_alembic(*args, url=url, lock_wait=lock_wait, timeout=60)


def _version(engine: Engine) -> list[str]:
    return list(migrations.current(engine))


def _monitoring_tables(engine: Engine) -> list[str]:
    """Which of our tables (and our version table) exist."""
    with engine.connect() as connection:
        return [
            name
            for name in (VERSION_TABLE, *Base.metadata.tables)
            if connection.scalar(text("SELECT to_regclass(:name)"), {"name": name}) is not None
        ]


def _policy_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM pg_policies")).scalar_one()


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr.strip().splitlines()[-1]


def _migration_lock_is_free(engine: Engine) -> bool:
    with engine.connect() as connection:
        free = bool(
            connection.scalar(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        )
        if free:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        return free


def test_migration_blocked_by_a_reader_fails_fast_and_reruns(
    engine: Engine, empty_database_url: URL
) -> None:
    migrations.upgrade(engine, FIRST)

    with engine.connect() as reader:
        # An open transaction that has read the table holds ACCESS SHARE until it ends; the
        # next revision's ALTER TABLE needs ACCESS EXCLUSIVE.
        reader.execute(text("SELECT count(*) FROM service_health_checks"))
        started = time.monotonic()
        process = subprocess.Popen(
            alembic_command("upgrade", "head"),
            cwd=ROOT,
            env=alembic_env(empty_database_url, lock_wait=60),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            with engine.connect() as bystander:
                _wait_for_lock_wait(bystander, "service_health_checks")
                # A query that arrives now queues behind the waiting ALTER, but only until the
                # migration gives up: lock_timeout bounds everyone's wait, not just its own.
                bystander.execute(text("SET statement_timeout = '20s'"))
                assert bystander.scalar(text("SELECT count(*) FROM service_health_checks")) == 0
                waited = time.monotonic() - started
            _, stderr = process.communicate(timeout=30)
        finally:
            process.kill()
        elapsed = time.monotonic() - started
        reader.commit()

    assert process.returncode == 1, stderr
    assert stderr.strip().splitlines()[-1] == LOCK_TIMEOUT_MESSAGE, stderr  # one line
    assert "Traceback" not in stderr
    assert elapsed < 10, f"the blocked migration took {elapsed:.1f}s to give up"
    assert waited < 10, f"a bystander query queued {waited:.1f}s behind the migration"
    assert _version(engine) == [FIRST]
    # The failed upgrade's one transaction rolled back: no later revision left a trace.
    assert _policy_count(engine) == 0
    assert _migration_lock_is_free(engine)

    rerun = _alembic(empty_database_url, "upgrade", "head")
    assert rerun.returncode == 0, rerun.stderr
    assert _version(engine) == [HEAD]


def _wait_for_lock_wait(connection: Connection, table: str) -> None:
    """Return once some backend is waiting for a lock on ``table`` (within 5 s)."""
    deadline = time.monotonic() + 5
    query = text(
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = to_regclass(:table) "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    while connection.scalar(query, {"table": table}) == 0:
        assert time.monotonic() < deadline, "the migration never queued for the table lock"
        time.sleep(0.05)
    connection.rollback()


FAILING_UPGRADE = (
    "op.execute(\"SET LOCAL lock_timeout = '5s'\")",
    'op.create_table("fault_probe", sa.Column("id", sa.BigInteger(), primary_key=True))',
    'op.execute("INSERT INTO fault_probe (id) VALUES (1)")',
    'op.execute("ALTER TABLE service_health_checks ADD COLUMN fault_probe text")',
    'raise RuntimeError("injected failure after the DDL")',
)


def test_a_failing_revision_leaves_no_trace_of_the_whole_upgrade(
    engine: Engine, tmp_path: Path
) -> None:
    """An upgrade is one transaction: when its last revision fails after its DDL, nothing of the
    upgrade persists, neither that revision's table nor the real history before it; no
    committed state ever showed a monitoring table."""
    ini = history_with_extra_revision(
        tmp_path,
        revision="fa11ed000001",
        message="creates a table, then fails",
        upgrade=FAILING_UPGRADE,
    )
    with engine.connect() as connection:
        with pytest.raises(RuntimeError, match="injected failure after the DDL"):
            upgrade_history(ini, connection)
        assert not connection.in_transaction()
        # The lock went with the transaction, on a connection that stays open.
        assert _migration_lock_is_free(engine)

    assert _version(engine) == []
    assert _monitoring_tables(engine) == []
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT to_regclass('fault_probe')")) is None
    assert _policy_count(engine) == 0

    # The same history without the failing revision then applies in full.
    assert migrations.upgrade(engine) == HISTORY
    assert _version(engine) == [HEAD]


@pytest.mark.parametrize(
    ("table", "change", "gap"),
    [
        ("alert_events", "NO FORCE", "row level security is not forced"),
        (VERSION_TABLE, "DISABLE", "row level security is off"),
    ],
)
def test_an_upgrade_stopping_at_an_unprotected_state_is_refused(
    engine: Engine, tmp_path: Path, table: str, change: str, gap: str
) -> None:
    """A revision that leaves one of our tables, the version table too, without row level
    security is not committed, whatever revision the upgrade stops at."""
    ini = history_with_extra_revision(
        tmp_path,
        revision="fa11ed000002",
        message="turns row level security off",
        upgrade=[
            "op.execute(\"SET LOCAL lock_timeout = '5s'\")",
            f'op.execute("ALTER TABLE {table} {change} ROW LEVEL SECURITY")',
        ],
    )
    with (
        engine.connect() as connection,
        pytest.raises(MigrationError, match=f"table {table} would be left unprotected \\({gap}\\)"),
    ):
        upgrade_history(ini, connection)
    assert _version(engine) == []
    assert _monitoring_tables(engine) == []


def test_migration_waits_for_another_migration_only_so_long(
    engine: Engine, empty_database_url: URL
) -> None:
    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        holder.commit()
        started = time.monotonic()
        result = _alembic(empty_database_url, "upgrade", "head", lock_wait=1)
        elapsed = time.monotonic() - started
        holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        holder.commit()

    assert result.returncode == 1, result.stderr
    assert _last_line(result) == (
        "cim-monitoring: another process has been migrating this database for over 1s; "
        "retry when it finishes, or raise MIGRATION_LOCK_TIMEOUT"
    )
    assert "Traceback" not in result.stderr
    assert elapsed < 6, f"gave up after {elapsed:.1f}s"
    assert _version(engine) == []
