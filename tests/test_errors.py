"""Errors on every path: engines of make_engine and make_async_engine raise DatabaseUnavailable
and QueryTimeout wherever they are used, not only inside session_scope; a host application's
own engine keeps its exception types. Both faces, against the real server."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import psycopg
import pytest
from faces import Face, FaceKind
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError

from cim_monitoring import DatabaseUnavailable, MonitoringError, QueryTimeout

if TYPE_CHECKING:
    from conftest import PostgresServer

SECRET = "pw-Sup3r-S3cret"
UNREACHABLE = f"postgresql+psycopg://u:{SECRET}@127.0.0.1:1/x"
SELECT_1 = text("SELECT 1")
PID = text("SELECT pg_backend_pid()")


def unit_of_work(face_kind: FaceKind, engine: object, work: Callable[[Face], object]) -> None:
    """``work`` in ``with factory.begin() as session``, the plain SQLAlchemy way."""
    with face_kind.begin(engine) as face:
        work(face)


def assert_names_the_server_without_password(error: BaseException, where: str) -> None:
    message = str(error)
    assert where in message, message
    assert SECRET not in message
    assert "check that the server is running" in message
    assert isinstance(error.__cause__, psycopg.OperationalError)  # the driver's own error


def test_unreachable_server_on_every_path(face_kind: FaceKind) -> None:
    engine = face_kind.engine(UNREACHABLE)
    where = "u:***@127.0.0.1:1/x"
    with pytest.raises(DatabaseUnavailable) as caught, face_kind.connected(engine):
        pass
    assert_names_the_server_without_password(caught.value, where)
    with pytest.raises(DatabaseUnavailable) as caught, face_kind.begin(engine) as face:
        face.execute(SELECT_1)
    assert_names_the_server_without_password(caught.value, where)
    with pytest.raises(DatabaseUnavailable) as caught, face_kind.scope(engine) as face:
        face.latest_status()
    assert_names_the_server_without_password(caught.value, where)
    with pytest.raises(DatabaseUnavailable) as caught:
        face_kind.purge_expired(engine)
    assert_names_the_server_without_password(caught.value, where)


def test_a_host_applications_engine_keeps_its_exception_types(face_kind: FaceKind) -> None:
    engine = face_kind.host_engine(UNREACHABLE)
    with pytest.raises(OperationalError), face_kind.begin(engine) as face:
        face.execute(SELECT_1)
    # Our unit of work translates them, as it always has.
    with pytest.raises(DatabaseUnavailable) as caught, face_kind.scope(engine) as face:
        face.execute(SELECT_1)
    assert_names_the_server_without_password(caught.value, "u:***@127.0.0.1:1/x")


def test_statement_timeout_through_a_plain_session(face_kind: FaceKind, migrated_url: URL) -> None:
    engine = face_kind.engine(migrated_url)

    def sleep_past_the_timeout(face: Face) -> None:
        face.execute(text("SET LOCAL statement_timeout = '50ms'"))
        face.execute(text("SELECT pg_sleep(5)"))

    with pytest.raises(QueryTimeout) as caught:
        unit_of_work(face_kind, engine, sleep_past_the_timeout)
    assert "statement timeout" in str(caught.value)
    assert migrated_url.database in str(caught.value)
    with face_kind.begin(engine) as face:
        assert face.scalar(SELECT_1) == 1


def test_backend_terminated_mid_transaction(
    face_kind: FaceKind, migrated_url: URL, pg_server: PostgresServer
) -> None:
    # One connection and no pre-ping: the next checkout works only if the error path itself
    # took the dead connection out of the pool.
    engine = face_kind.engine(migrated_url, pool_size=1, max_overflow=0, pool_pre_ping=False)
    pids = []

    def lose_the_connection(face: Face) -> None:
        pids.append(face.scalar(PID))
        pg_server.execute_admin(f"SELECT pg_terminate_backend({pids[0]}, 5000)")
        face.execute(SELECT_1)

    with pytest.raises(DatabaseUnavailable) as caught:
        unit_of_work(face_kind, engine, lose_the_connection)
    assert "administrator command" in str(caught.value)
    with face_kind.begin(engine) as face:
        assert face.scalar(PID) != pids[0]


def test_pre_ping_recycles_a_dead_pooled_connection_silently(
    face_kind: FaceKind, migrated_url: URL, pg_server: PostgresServer
) -> None:
    def kill_the_pooled_connection(engine: object) -> int:
        with face_kind.begin(engine) as face:
            pid = face.scalar(PID)
        pg_server.execute_admin(f"SELECT pg_terminate_backend({pid}, 5000)")
        return pid

    # Control: without pre-ping the pool hands out the dead connection and the call fails.
    plain = face_kind.engine(migrated_url, pool_size=1, max_overflow=0, pool_pre_ping=False)
    kill_the_pooled_connection(plain)
    with pytest.raises(DatabaseUnavailable):
        unit_of_work(face_kind, plain, lambda face: face.execute(SELECT_1))

    engine = face_kind.engine(migrated_url, pool_size=1, max_overflow=0)
    old_pid = kill_the_pooled_connection(engine)
    with face_kind.begin(engine) as face:
        assert face.scalar(PID) != old_pid


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [
        ("08006", DatabaseUnavailable),  # connection_failure
        ("57P01", DatabaseUnavailable),  # admin_shutdown
        ("57P02", DatabaseUnavailable),  # crash_shutdown
        ("57P03", DatabaseUnavailable),  # cannot_connect_now
        ("57014", QueryTimeout),  # query_canceled
        ("P0001", DBAPIError),  # raise_exception: not ours to translate
    ],
)
def test_sqlstates_relayed_on_an_open_connection(
    face_kind: FaceKind, migrated_url: URL, sqlstate: str, expected: type[Exception]
) -> None:
    # A pooler (PgBouncer, Supavisor) relays the server's shutdown errors on a client
    # connection that stays open: the code alone must tell that the database is gone.
    engine = face_kind.engine(migrated_url)
    relay = f"DO $$ BEGIN RAISE EXCEPTION 'relayed' USING ERRCODE = '{sqlstate}'; END $$"
    with pytest.raises(expected) as caught, face_kind.begin(engine) as face:
        face.execute(text(relay))
    assert isinstance(caught.value, MonitoringError) == (expected is not DBAPIError)
