"""Engines, session factories and the unit of work, against the real server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import psycopg
import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from cim_monitoring import (
    ConfigurationError,
    DatabaseUnavailable,
    Settings,
    make_engine,
    make_session_factory,
    session_scope,
)
from cim_monitoring.migrations import alembic_config

if TYPE_CHECKING:
    from conftest import PostgresServer

SECRET = "pw-Sup3r-S3cret"
INSERT_CHECK = text(
    "INSERT INTO service_health_checks (service_name, status) VALUES (:name, 'healthy')"
)
COUNT_CHECKS = text("SELECT count(*) FROM service_health_checks WHERE service_name = :name")


@pytest.fixture(scope="module")
def scratch_engine(pg_server: PostgresServer) -> Iterator[Engine]:
    """A migrated database of this module's own: these tests commit for real."""
    url = pg_server.create_database()
    engine = make_engine(url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")
    yield engine
    engine.dispose()


def _count(engine: Engine, name: str) -> int:
    """Counted on a connection of its own: sees only what was committed."""
    with engine.connect() as connection:
        return connection.execute(COUNT_CHECKS, {"name": name}).scalar_one()


def test_application_name(migrated_url: URL) -> None:
    engine = make_engine(migrated_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SHOW application_name")).scalar_one() == (
                "cim-monitoring"
            )
            seen = connection.execute(
                text("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
            ).scalar_one()
            assert seen == "cim-monitoring"
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("url_query", "settings", "expected"),
    [
        ({"application_name": "from-url"}, Settings(), "from-url"),
        ({}, Settings(application_name="worker-7"), "worker-7"),
    ],
)
def test_application_name_overrides(
    migrated_url: URL, url_query: dict[str, str], settings: Settings, expected: str
) -> None:
    engine = make_engine(migrated_url.update_query_dict(url_query), settings=settings)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SHOW application_name")).scalar_one() == expected
    finally:
        engine.dispose()


def _terminate_pooled_connection(engine: Engine, pg_server: PostgresServer) -> int:
    """Open and return one pooled connection, then kill its backend from the outside."""
    with engine.connect() as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    # Waits (up to 5 s) until the backend is really gone.
    pg_server.execute_admin(f"SELECT pg_terminate_backend({pid}, 5000)")
    return pid


def test_pool_pre_ping_replaces_a_dead_connection(
    migrated_url: URL, pg_server: PostgresServer
) -> None:
    # Control: without pre-ping the pool hands out the dead connection and the query fails.
    plain = create_engine(migrated_url, pool_size=1, max_overflow=0)
    _terminate_pooled_connection(plain, pg_server)
    with pytest.raises(OperationalError), plain.connect() as connection:
        connection.execute(text("SELECT 1"))
    plain.dispose()

    engine = make_engine(migrated_url, pool_size=1, max_overflow=0)
    try:
        old_pid = _terminate_pooled_connection(engine, pg_server)
        with engine.connect() as connection:
            new_pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert new_pid != old_pid
    finally:
        engine.dispose()


def test_session_factory_accepts_the_host_apps_engine(migrated_url: URL) -> None:
    host_engine = create_engine(migrated_url.render_as_string(hide_password=False))
    try:
        factory = make_session_factory(host_engine)
        assert factory.kw["bind"] is host_engine
        with factory() as session:
            assert session.get_bind() is host_engine
            assert session.execute(text("SELECT count(*) FROM alert_events")).scalar_one() >= 0
    finally:
        host_engine.dispose()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_session_factory_rejects_other_databases(url: str) -> None:
    engine = create_engine(url)
    with pytest.raises(ConfigurationError, match=r"sqlite\+pysqlite.*psycopg 3"):
        make_session_factory(engine)
    engine.dispose()


def test_session_scope_commits(scratch_engine: Engine) -> None:
    factory = make_session_factory(scratch_engine)
    with session_scope(factory) as session:
        assert isinstance(session, Session)
        session.execute(INSERT_CHECK, {"name": "committed"})
        assert _count(scratch_engine, "committed") == 0  # not yet visible outside
    assert _count(scratch_engine, "committed") == 1


def _unit_of_work(engine: Engine, work: Callable[[Session], object]) -> None:
    with session_scope(make_session_factory(engine)) as session:
        work(session)


def test_session_scope_rolls_back_on_exception(scratch_engine: Engine) -> None:
    def insert_then_fail(session: Session) -> None:
        session.execute(INSERT_CHECK, {"name": "rolled-back"})
        assert session.execute(COUNT_CHECKS, {"name": "rolled-back"}).scalar_one() == 1
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _unit_of_work(scratch_engine, insert_then_fail)
    assert _count(scratch_engine, "rolled-back") == 0


def test_session_scope_rolls_back_on_database_error(scratch_engine: Engine) -> None:
    def insert_then_violate(session: Session) -> None:
        session.execute(INSERT_CHECK, {"name": "before-error"})
        session.execute(INSERT_CHECK, {"name": ""})  # violates the service_name CHECK

    with pytest.raises(IntegrityError):
        _unit_of_work(scratch_engine, insert_then_violate)
    assert _count(scratch_engine, "before-error") == 0


def test_session_scope_lost_connection_is_database_unavailable(scratch_engine: Engine) -> None:
    def insert_then_lose_connection(session: Session) -> None:
        session.execute(INSERT_CHECK, {"name": "lost"})
        session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

    with pytest.raises(DatabaseUnavailable) as caught:
        _unit_of_work(scratch_engine, insert_then_lose_connection)
    assert "check that the server is running" in str(caught.value)
    assert _count(scratch_engine, "lost") == 0
    # The pool recovers: the next unit of work gets a fresh connection.
    _unit_of_work(scratch_engine, lambda session: session.execute(INSERT_CHECK, {"name": "after"}))
    assert _count(scratch_engine, "after") == 1


def test_unreachable_server_is_database_unavailable_without_password() -> None:
    engine = make_engine(f"postgresql+psycopg://u:{SECRET}@127.0.0.1:1/x")
    factory = make_session_factory(engine)
    try:
        with pytest.raises(DatabaseUnavailable) as caught, session_scope(factory) as session:
            session.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    message = str(caught.value)
    assert "127.0.0.1" in message
    assert "u:***@127.0.0.1:1/x" in message
    assert SECRET not in message
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)  # the driver's error
