"""Engines, session factories and the unit of work.

The host application may already own an Engine (the seed design's "use the existing
connection"); :func:`make_session_factory` takes it as it is. Transactions belong to the
caller: ``with factory.begin() as session:`` or :func:`session_scope`.

Engines made here raise :class:`DatabaseUnavailable` and :class:`QueryTimeout` on every path
(sessions, connections, retention, COPY) through SQLAlchemy's ``handle_error`` event. A host
application's own Engine is left alone, so its exception types do not change under it; inside
:func:`session_scope` its errors are translated too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session, sessionmaker

from cim_monitoring.config import Settings, normalize_url, redact_url, split_pooler_flag
from cim_monitoring.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    MonitoringError,
    QueryTimeout,
)

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10
# SQLSTATE class 08 is "connection exception"; 57P01-57P03 are shutdowns and "cannot connect now".
# A pooler (PgBouncer, Supavisor) relays them on a client connection that stays open, so the
# code, not only a broken connection, marks the server as gone.
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def engine_arguments(
    url: str | URL | None, settings: Settings | None, engine_kwargs: dict[str, Any]
) -> tuple[URL, dict[str, Any]]:
    """The URL and ``create_engine`` arguments of :func:`make_engine` (and of the async one)."""
    settings = settings or Settings()
    target = settings.sqlalchemy_url() if url is None else normalize_url(url)
    target, transaction_pooler = split_pooler_flag(target)
    connect_args: dict[str, Any] = {}
    if "application_name" not in target.query:
        connect_args["application_name"] = settings.application_name
    if "connect_timeout" not in target.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    if transaction_pooler:
        connect_args["prepare_threshold"] = None
    connect_args.update(engine_kwargs.pop("connect_args", {}))
    logger.debug("creating engine", extra={"database": redact_url(target)})
    return target, {"pool_pre_ping": True, "connect_args": connect_args, **engine_kwargs}


def make_engine(
    url: str | URL | None = None, *, settings: Settings | None = None, **engine_kwargs: Any
) -> Engine:
    """Create an Engine for ``url`` (default: ``DATABASE_URL`` from :class:`Settings`).

    Connections are pre-pinged so a server restart costs no failed call, carry an
    ``application_name``, and give up connecting after ten seconds. A lost or unreachable
    server raises :class:`DatabaseUnavailable` and a cancelled statement :class:`QueryTimeout`,
    wherever the engine is used. Extra keyword arguments go to :func:`sqlalchemy.create_engine`.
    """
    target, arguments = engine_arguments(url, settings, engine_kwargs)
    return translate_errors(create_engine(target, **arguments))


def translate_errors(engine: Engine) -> Engine:
    """Make ``engine`` raise the package's errors for a lost server and a cancelled statement."""
    # Returned, not raised, so listeners the application adds after ours still see the error.
    event.listen(engine, "handle_error", _translate, retval=True)
    return engine


def _translate(context: ExceptionContext) -> BaseException | None:
    # Pre-ping must see the driver's own error: it recycles the dead connection silently.
    if context.is_pre_ping:
        return None
    where = redact_url(context.engine.url) if context.engine is not None else "the database"
    return database_error(
        context.original_exception, invalidated=context.is_disconnect, where=where
    )


def database_error(
    error: BaseException | None, *, invalidated: bool, where: str
) -> MonitoringError | None:
    """The package's error for a driver ``error`` on the server ``where`` (a redacted URL), or
    None when it is not one: a lost or unreachable server, or a cancelled statement."""
    kind = _kind(error, invalidated)
    if kind is None or error is None:
        return None
    first = _first_line(error)
    if kind is QueryTimeout:
        return QueryTimeout(
            f"{first}: a statement on {where} ran longer than statement_timeout allows; narrow "
            "the query (time range, services) or raise the timeout"
        )
    return DatabaseUnavailable(
        f"cannot reach the database at {where}: {first}; check that the server is running "
        "and DATABASE_URL is right"
    )


def is_unavailable(exc: DBAPIError) -> bool:
    """Whether ``exc`` means the server is unreachable or the connection was lost."""
    return _kind(exc.orig, exc.connection_invalidated) is DatabaseUnavailable


def _kind(error: BaseException | None, invalidated: bool) -> type[MonitoringError] | None:
    # Only driver errors: an interrupt or a cancelled task also "invalidates" the connection.
    if not isinstance(error, psycopg.Error):
        return None
    if isinstance(error, psycopg.errors.QueryCanceled):
        return QueryTimeout
    if invalidated:
        return DatabaseUnavailable
    sqlstate = error.sqlstate
    if isinstance(error, psycopg.OperationalError) and (
        sqlstate is None or sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    ):
        return DatabaseUnavailable
    return None


def driver_error(connection: Connection, statement: str, error: psycopg.Error) -> Exception:
    """What to raise for ``error``, raised by the driver itself (COPY) on ``connection``.

    As SQLAlchemy does for the statements it runs: a lost connection is invalidated so the pool
    replaces it, and the error is the package's when the engine is one of ours, else a
    ``DBAPIError`` (the host application's engine keeps its exception types).
    """
    # psycopg.Error is the DB-API Error; SQLAlchemy types it as a protocol of its own.
    dbapi_error = cast(Any, error)
    lost = connection.dialect.is_disconnect(
        dbapi_error, connection.connection.dbapi_connection, None
    )
    wrapped = DBAPIError.instance(
        statement, None, error, psycopg.Error, connection_invalidated=lost
    )
    if lost:
        connection.invalidate(wrapped)
    if not event.contains(connection.engine, "handle_error", _translate):
        return wrapped
    where = redact_url(connection.engine.url)
    return database_error(error, invalidated=lost, where=where) or wrapped


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to ``engine``, ours or the host application's.

    Sessions do not expire objects on commit, so results read inside a transaction stay
    readable after it. The engine must speak psycopg 3 to PostgreSQL: bulk ingest streams COPY
    through the session's own connection. A host application's Engine keeps its own exception
    types (use :func:`session_scope` for the package's).
    """
    if isinstance(engine, AsyncEngine):
        raise ConfigurationError(
            "make_session_factory takes a sync Engine; for an AsyncEngine use "
            "cim_monitoring.aio.make_async_session_factory"
        )
    check_driver(engine)
    return sessionmaker(engine, expire_on_commit=False)


def check_driver(engine: Engine) -> None:
    """``ConfigurationError`` unless ``engine`` speaks psycopg 3 to PostgreSQL."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        raise ConfigurationError(
            f"engine uses {engine.dialect.name}+{engine.dialect.driver}; cim-monitoring needs "
            "PostgreSQL through psycopg 3 (postgresql+psycopg://)"
        )


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commits when the block ends normally, rolls back on any exception.

    A lost or unreachable database surfaces as :class:`DatabaseUnavailable` (naming the server,
    never the password), and a statement cancelled by ``statement_timeout`` as
    :class:`QueryTimeout`, rather than a driver traceback, also on a host application's engine.
    """
    try:
        with factory.begin() as session:
            yield session
    except DBAPIError as exc:
        raise scope_error(exc, factory.kw.get("bind")) from exc.orig


def scope_error(exc: DBAPIError, bind: object) -> Exception:
    """What a unit of work raises for ``exc``, a driver error that reached it untranslated
    (only a host application's engine lets one through)."""
    where = redact_url(bind.url) if isinstance(bind, Engine | AsyncEngine) else "the database"
    return database_error(exc.orig, invalidated=exc.connection_invalidated, where=where) or exc


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "connection failed"


@contextmanager
def connected(bind: Engine | Connection) -> Iterator[Connection]:
    """``bind`` itself when it is a Connection, else a connection of the Engine for the block."""
    if isinstance(bind, Connection):
        yield bind
        return
    with bind.connect() as connection:
        yield connection
