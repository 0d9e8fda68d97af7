"""Engines, session factories and the unit of work, against the real server."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from faces import Face, FaceKind
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import cim_monitoring
from cim_monitoring import (
    ConfigurationError,
    DatabaseUnavailable,
    Settings,
    aio,
    make_engine,
    make_session_factory,
    migrations,
    repository,
)
from cim_monitoring.aio import make_async_engine, make_async_session_factory

if TYPE_CHECKING:
    from conftest import PostgresServer

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
        migrations.upgrade(connection)
    yield engine
    engine.dispose()


def _count(engine: Engine, name: str) -> int:
    """Counted on a connection of its own: sees only what was committed."""
    with engine.connect() as connection:
        return connection.execute(COUNT_CHECKS, {"name": name}).scalar_one()


def test_application_name(face_kind: FaceKind, migrated_url: URL) -> None:
    engine = face_kind.engine(migrated_url)
    with face_kind.begin(engine) as face:
        assert face.scalar(text("SHOW application_name")) == "cim-monitoring"
        seen = face.scalar(
            text("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        )
        assert seen == "cim-monitoring"


@pytest.mark.parametrize(
    ("url_query", "settings", "expected"),
    [
        ({"application_name": "from-url"}, Settings(), "from-url"),
        ({}, Settings(application_name="worker-7"), "worker-7"),
    ],
)
def test_application_name_overrides(
    face_kind: FaceKind,
    migrated_url: URL,
    url_query: dict[str, str],
    settings: Settings,
    expected: str,
) -> None:
    engine = face_kind.engine(migrated_url.update_query_dict(url_query), settings=settings)
    with face_kind.begin(engine) as face:
        assert face.scalar(text("SHOW application_name")) == expected


def test_each_session_factory_refuses_the_other_faces_engine(migrated_url: URL) -> None:
    async_engine = make_async_engine(migrated_url)
    with pytest.raises(
        ConfigurationError, match=r"cim_monitoring\.aio\.make_async_session_factory"
    ):
        make_session_factory(async_engine)  # type: ignore[arg-type]
    sync_engine = make_engine(migrated_url)
    with pytest.raises(ConfigurationError, match=r"cim_monitoring\.make_session_factory"):
        make_async_session_factory(sync_engine)  # type: ignore[arg-type]
    sync_engine.dispose()
    asyncio.run(async_engine.dispose())


def test_async_session_factory_accepts_the_host_apps_engine(migrated_url: URL) -> None:
    host_engine = create_async_engine(migrated_url)

    async def record_and_read() -> list[tuple[str, str]]:
        factory = make_async_session_factory(host_engine)
        assert factory.kw["bind"] is host_engine
        async with factory() as session:  # closed without a commit: nothing stays
            await aio.record_check(session, {"service_name": "host-engine", "status": "down"})
            latest = await aio.latest_status(session, ["host-engine"])
            return [(status.service_name, status.status) for status in latest]

    async def run() -> list[tuple[str, str]]:
        try:
            return await record_and_read()
        finally:
            await host_engine.dispose()

    assert asyncio.run(run()) == [("host-engine", "down")]


def test_session_factory_accepts_the_host_apps_engine(migrated_url: URL) -> None:
    host_engine = create_engine(migrated_url.render_as_string(hide_password=False))
    try:
        factory = make_session_factory(host_engine)
        assert factory.kw["bind"] is host_engine
        with factory() as session:  # closed without a commit: nothing stays
            assert session.get_bind() is host_engine
            repository.record_check(session, {"service_name": "host-engine", "status": "down"})
            latest = repository.latest_status(session, ["host-engine"])
            assert [(status.service_name, status.status) for status in latest] == [
                ("host-engine", "down")
            ]
    finally:
        host_engine.dispose()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_session_factory_rejects_other_databases(url: str) -> None:
    engine = create_engine(url)
    with pytest.raises(ConfigurationError, match=r"sqlite\+pysqlite.*psycopg 3"):
        make_session_factory(engine)
    engine.dispose()


def test_session_scope_commits(face_kind: FaceKind, scratch_engine: Engine) -> None:
    engine = face_kind.engine(scratch_engine.url)
    with face_kind.scope(engine) as face:
        assert isinstance(face.session, Session | AsyncSession)
        face.execute(INSERT_CHECK, {"name": f"committed-{face.name}"})
        assert _count(scratch_engine, f"committed-{face.name}") == 0  # not yet visible outside
    assert _count(scratch_engine, f"committed-{face.name}") == 1


def _unit_of_work(face_kind: FaceKind, engine: object, work: Callable[[Face], object]) -> None:
    with face_kind.scope(engine) as face:
        work(face)


def test_session_scope_rolls_back_on_exception(face_kind: FaceKind, scratch_engine: Engine) -> None:
    engine = face_kind.engine(scratch_engine.url)

    def insert_then_fail(face: Face) -> None:
        face.execute(INSERT_CHECK, {"name": "rolled-back"})
        assert face.scalar(COUNT_CHECKS, {"name": "rolled-back"}) == 1
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _unit_of_work(face_kind, engine, insert_then_fail)
    assert _count(scratch_engine, "rolled-back") == 0


def test_session_scope_rolls_back_on_database_error(
    face_kind: FaceKind, scratch_engine: Engine
) -> None:
    engine = face_kind.engine(scratch_engine.url)

    def insert_then_violate(face: Face) -> None:
        face.execute(INSERT_CHECK, {"name": "before-error"})
        face.execute(INSERT_CHECK, {"name": ""})  # violates the service_name CHECK

    with pytest.raises(IntegrityError):
        _unit_of_work(face_kind, engine, insert_then_violate)
    assert _count(scratch_engine, "before-error") == 0


def test_session_scope_lost_connection_is_database_unavailable(
    face_kind: FaceKind, scratch_engine: Engine
) -> None:
    engine = face_kind.engine(scratch_engine.url)

    def insert_then_lose_connection(face: Face) -> None:
        face.execute(INSERT_CHECK, {"name": "lost"})
        face.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

    with pytest.raises(DatabaseUnavailable) as caught:
        _unit_of_work(face_kind, engine, insert_then_lose_connection)
    assert "check that the server is running" in str(caught.value)
    assert _count(scratch_engine, "lost") == 0
    # The pool recovers: the next unit of work gets a fresh connection.
    after = f"after-{face_kind.name}"
    _unit_of_work(face_kind, engine, lambda face: face.execute(INSERT_CHECK, {"name": after}))
    assert _count(scratch_engine, after) == 1


def test_the_async_face_mirrors_the_repository_and_stays_out_of_the_top_level() -> None:
    for name in repository.__all__:
        assert name in aio.__all__
        assert inspect.iscoroutinefunction(getattr(aio, name)), name
    only_async = set(aio.__all__) - set(repository.__all__)
    assert only_async == {"make_async_engine", "make_async_session_factory", "async_session_scope"}
    assert not only_async & set(cim_monitoring.__all__)
