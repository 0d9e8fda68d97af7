"""Engines, session factories and the unit of work.

The host application may already own an Engine (the seed design's "use the existing
connection"); :func:`make_session_factory` takes it as it is. Transactions belong to the
caller: ``with factory.begin() as session:`` or :func:`session_scope`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from cim_monitoring.config import Settings, normalize_url, redact_url, split_pooler_flag
from cim_monitoring.errors import ConfigurationError, DatabaseUnavailable, QueryTimeout

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10
# SQLSTATE class 08 is "connection exception"; 57P01-57P03 are shutdowns and "cannot connect now".
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def make_engine(
    url: str | URL | None = None, *, settings: Settings | None = None, **engine_kwargs: Any
) -> Engine:
    """Create an Engine for ``url`` (default: ``DATABASE_URL`` from :class:`Settings`).

    Connections are pre-pinged so a server restart costs no failed call, carry an
    ``application_name``, and give up connecting after ten seconds. Extra keyword arguments go
    to :func:`sqlalchemy.create_engine`.
    """
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
    return create_engine(target, pool_pre_ping=True, connect_args=connect_args, **engine_kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to ``engine``, ours or the host application's.

    Sessions do not expire objects on commit, so results read inside a transaction stay
    readable after it. The engine must speak psycopg 3 to PostgreSQL: bulk ingest streams COPY
    through the session's own connection.
    """
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        raise ConfigurationError(
            f"engine uses {engine.dialect.name}+{engine.dialect.driver}; cim-monitoring needs "
            "PostgreSQL through psycopg 3 (postgresql+psycopg://)"
        )
    return sessionmaker(engine, expire_on_commit=False)


def is_unavailable(exc: DBAPIError) -> bool:
    """Whether ``exc`` means the server is unreachable or the connection was lost."""
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    if not isinstance(orig, psycopg.OperationalError):
        return False
    sqlstate = orig.sqlstate
    return sqlstate is None or sqlstate.startswith(_UNAVAILABLE_SQLSTATES)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commits when the block ends normally, rolls back on any exception.

    A lost or unreachable database surfaces as :class:`DatabaseUnavailable` (naming the server,
    never the password), and a statement cancelled by ``statement_timeout`` as
    :class:`QueryTimeout`, rather than a driver traceback.
    """
    try:
        with factory.begin() as session:
            yield session
    except DBAPIError as exc:
        if isinstance(exc.orig, psycopg.errors.QueryCanceled):
            raise QueryTimeout(
                f"{_first_line(exc.orig)}: the statement ran longer than statement_timeout "
                "allows; narrow the query (time range, services) or raise the timeout"
            ) from exc
        if not is_unavailable(exc):
            raise
        bind = factory.kw.get("bind")
        where = redact_url(bind.url) if isinstance(bind, Engine) else "the database"
        raise DatabaseUnavailable(
            f"cannot reach {where}: {_first_line(exc.orig)}; check that the server is running "
            "and DATABASE_URL is right"
        ) from exc


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip() if error is not None else ""
    return text.splitlines()[0] if text else "connection failed"


@contextmanager
def connected(bind: Engine | Connection) -> Iterator[Connection]:
    """``bind`` itself when it is a Connection, else a connection of the Engine for the block."""
    if isinstance(bind, Connection):
        yield bind
        return
    with bind.connect() as connection:
        yield connection
