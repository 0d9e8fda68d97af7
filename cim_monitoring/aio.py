"""The async face: engines, sessions and the repository API for ``AsyncSession`` (FastAPI and
other asyncio applications).

Every repository function has the same name and arguments as in :mod:`cim_monitoring`, with
an ``AsyncSession`` first, and runs the sync function through ``AsyncSession.run_sync``: the
SQL and the validation exist once, for both faces. ``record_checks`` streams its COPY through
psycopg's async connection; ``purge_expired`` also takes an ``AsyncEngine``. The top-level
package stays sync: these names live here only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.orm import Session

from cim_monitoring import repository
from cim_monitoring.config import Settings
from cim_monitoring.db import check_driver, engine_arguments, scope_error, translate_errors
from cim_monitoring.errors import ConfigurationError

# The repository's functions, under the same names, and the async engine and sessions.
__all__ = [
    "async_session_scope",
    "make_async_engine",
    "make_async_session_factory",
    *repository.__all__,
]

P = ParamSpec("P")
R = TypeVar("R")


def make_async_engine(
    url: str | URL | None = None, *, settings: Settings | None = None, **engine_kwargs: Any
) -> AsyncEngine:
    """An ``AsyncEngine`` (psycopg 3's async connection) with the same options and the same
    error translation as :func:`cim_monitoring.make_engine`."""
    target, arguments = engine_arguments(url, settings, engine_kwargs)
    engine = _create_async_engine(target, **arguments)
    translate_errors(engine.sync_engine)
    return engine


def make_async_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """An ``async_sessionmaker`` bound to ``engine``, ours or the host application's (whose
    exception types are left as they are, as with :func:`cim_monitoring.make_session_factory`)."""
    if not isinstance(engine, AsyncEngine):
        raise ConfigurationError(
            "make_async_session_factory takes an AsyncEngine; for a sync Engine use "
            "cim_monitoring.make_session_factory"
        )
    check_driver(engine.sync_engine)
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def async_session_scope(
    factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work, as :func:`cim_monitoring.session_scope`: commits when the block ends
    normally, rolls back on any exception, raises the package's errors for a lost server or a
    cancelled statement."""
    try:
        async with factory.begin() as session:
            yield session
    except DBAPIError as exc:
        raise scope_error(exc, factory.kw.get("bind")) from exc.orig


def _on_async_session(
    function: Callable[Concatenate[Session, P], R],
) -> Callable[Concatenate[AsyncSession, P], Coroutine[Any, Any, R]]:
    """``function`` (sync, session first) as a coroutine function taking an ``AsyncSession``."""

    @wraps(function)
    async def run(session: AsyncSession, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await session.run_sync(function, *args, **kwargs)

    return run


def _on_async_target(
    function: Callable[Concatenate[Session | Engine, P], R],
) -> Callable[Concatenate[AsyncSession | AsyncEngine, P], Coroutine[Any, Any, R]]:
    """As :func:`_on_async_session`, and given an ``AsyncEngine``, ``function`` gets its sync
    engine: each of its transactions then commits on its own, as with a sync Engine."""

    @wraps(function)
    async def run(target: AsyncSession | AsyncEngine, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if isinstance(target, AsyncSession):
            return await target.run_sync(function, *args, **kwargs)
        engine = target.sync_engine
        # The session never connects: run_sync only provides the greenlet in which the sync
        # engine may drive the async driver.
        async with AsyncSession(target) as session:
            return await session.run_sync(lambda _: function(engine, *args, **kwargs))

    return run


record_check = _on_async_session(repository.record_check)
record_checks = _on_async_session(repository.record_checks)
latest_status = _on_async_session(repository.latest_status)
check_history = _on_async_session(repository.check_history)
service_stats = _on_async_session(repository.service_stats)
status_series = _on_async_session(repository.status_series)
status_changes = _on_async_session(repository.status_changes)
incidents = _on_async_session(repository.incidents)
raise_alert = _on_async_session(repository.raise_alert)
acknowledge_alert = _on_async_session(repository.acknowledge_alert)
resolve_alert = _on_async_session(repository.resolve_alert)
resolve_alerts = _on_async_session(repository.resolve_alerts)
active_alerts = _on_async_session(repository.active_alerts)
alerts_by_id_prefix = _on_async_session(repository.alerts_by_id_prefix)
dashboard = _on_async_session(repository.dashboard)
database_now = _on_async_session(repository.database_now)
count_expired = _on_async_session(repository.count_expired)
purge_expired = _on_async_target(repository.purge_expired)
