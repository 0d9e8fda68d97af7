"""Both faces of the package, sync and async, driven the same way from a plain test function.

A :class:`Face` is the repository API bound to one session: ``face.record_check(check)``
calls ``cim_monitoring.record_check(session, check)`` or awaits
``cim_monitoring.aio.record_check(async_session, check)``, and ``face.execute`` runs raw SQL in
the same transaction. A :class:`FaceKind` makes engines and units of work of its face. The async
kind runs every coroutine to completion on an ``asyncio.Runner`` of its own, kept for the test.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, contextmanager
from types import ModuleType
from typing import Any, TypeVar

from sqlalchemy import Engine, Executable, Result, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import cim_monitoring
from cim_monitoring import aio, make_engine, make_session_factory, repository, session_scope
from workbench.plans import Statement, StatementLog, explain

T = TypeVar("T")
REPOSITORY = frozenset(repository.__all__)
KINDS = ("sync", "async")


class Face:
    """The repository functions of one face, bound to one session, plus raw SQL beside them."""

    def __init__(self, kind: FaceKind, session: Session | AsyncSession) -> None:
        self.kind = kind
        self.name = kind.name
        self.session = session

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in REPOSITORY:
            raise AttributeError(name)
        function = getattr(self.kind.module, name)
        return lambda *args, **kwargs: self.kind.run(function(self.session, *args, **kwargs))

    def execute(self, statement: Executable, params: dict[str, Any] | None = None) -> Result[Any]:
        """``statement`` in the face's transaction; the result is fully fetched."""
        return self.kind.run(self.session.execute(statement, params))

    def scalar(self, statement: Executable, params: dict[str, Any] | None = None) -> Any:
        return self.execute(statement, params).scalar_one()

    @contextmanager
    def statements(self) -> Iterator[StatementLog]:
        """The statements the face sends on its connection inside the block."""
        connection = self.kind.run(self.session.connection())
        # The async face runs the sync functions on the sync Connection underneath.
        with StatementLog().capture(getattr(connection, "sync_connection", connection)) as log:
            yield log

    def plan(self, statement: Statement) -> Any:
        """The ``EXPLAIN (FORMAT JSON)`` document of a captured statement, in the face's
        transaction (so it sees the test's rows)."""
        connection = self.kind.run(self.session.connection())
        return self.kind.run(connection.exec_driver_sql(*explain(statement))).scalar_one()

    @contextmanager
    def rolled_back(self) -> Iterator[None]:
        """A savepoint around the block, rolled back at its end."""
        savepoint = self.kind.run(self.session.begin_nested())
        try:
            yield
        finally:
            self.kind.run(savepoint.rollback())


class FaceKind:
    """Engines and units of work of the sync face; :class:`AsyncKind` overrides the async way."""

    name = "sync"
    module: ModuleType = cim_monitoring

    def __init__(self) -> None:
        self._engines: list[Engine | AsyncEngine] = []

    def run(self, value: T) -> T:
        """The value of a call of this face (the async kind awaits it)."""
        return value

    def engine(self, url: URL, **kwargs: Any) -> Engine | AsyncEngine:
        """An engine of this face on ``url``, disposed when the test ends."""
        engine = make_engine(url, **kwargs)
        self._engines.append(engine)
        return engine

    @contextmanager
    def begin(self, engine: Any) -> Iterator[Face]:
        """``with factory.begin() as session``: commit at the end, roll back on an error."""
        with make_session_factory(engine).begin() as session:
            yield Face(self, session)

    def host_engine(self, url: URL) -> Engine | AsyncEngine:
        """An engine made by the host application itself, not by us."""
        engine = create_engine(url)
        self._engines.append(engine)
        return engine

    @contextmanager
    def connected(self, engine: Any) -> Iterator[Any]:
        """``with engine.connect() as connection``."""
        with engine.connect() as connection:
            yield connection

    @contextmanager
    def scope(self, engine: Any) -> Iterator[Face]:
        """``session_scope(factory)``."""
        with session_scope(make_session_factory(engine)) as session:
            yield Face(self, session)

    def purge_expired(self, target: Any, **kwargs: Any) -> Any:
        return self.run(self.module.purge_expired(target, **kwargs))

    def concurrently(
        self, engine: Any, count: int, name: str, *args: Any, **kwargs: Any
    ) -> list[Any]:
        """``count`` transactions calling the repository function ``name`` at once (released
        together once all are connected); each commits, or returns the error it raised."""
        factory = make_session_factory(engine)
        barrier = threading.Barrier(count)

        def one() -> Any:
            with factory() as session:
                session.connection()
                barrier.wait()
                try:
                    result = getattr(repository, name)(session, *args, **kwargs)
                except cim_monitoring.MonitoringError as exc:
                    session.rollback()
                    return exc
                session.commit()
                return result

        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(lambda _: one(), range(count)))

    def close(self) -> None:
        for engine in self._engines:
            self.run(engine.dispose())


class AsyncKind(FaceKind):
    name = "async"
    module = aio

    def __init__(self) -> None:
        super().__init__()
        self._runner = asyncio.Runner()

    def run(self, value: Any) -> Any:
        async def awaited() -> Any:
            return await value

        return self._runner.run(awaited())

    def engine(self, url: URL, **kwargs: Any) -> AsyncEngine:
        engine = aio.make_async_engine(url, **kwargs)
        self._engines.append(engine)
        return engine

    def host_engine(self, url: URL) -> AsyncEngine:
        engine = create_async_engine(url)
        self._engines.append(engine)
        return engine

    @contextmanager
    def connected(self, engine: Any) -> Iterator[Any]:
        with self._entered(engine.connect()) as connection:
            yield connection

    @contextmanager
    def begin(self, engine: Any) -> Iterator[Face]:
        with self._entered(aio.make_async_session_factory(engine).begin()) as session:
            yield Face(self, session)

    @contextmanager
    def scope(self, engine: Any) -> Iterator[Face]:
        factory = aio.make_async_session_factory(engine)
        with self._entered(aio.async_session_scope(factory)) as session:
            yield Face(self, session)

    @contextmanager
    def joined(self, engine: AsyncEngine) -> Iterator[Face]:
        """A session in an outer transaction that is rolled back at the end."""
        connection = self.run(engine.connect())
        try:
            transaction = self.run(connection.begin())
            session = AsyncSession(
                bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
            )
            try:
                yield Face(self, session)
            finally:
                self.run(session.close())
                self.run(transaction.rollback())
        finally:
            self.run(connection.close())

    def concurrently(
        self, engine: Any, count: int, name: str, *args: Any, **kwargs: Any
    ) -> list[Any]:
        factory = aio.make_async_session_factory(engine)
        barrier = asyncio.Barrier(count)

        async def one() -> Any:
            async with factory() as session:
                await session.connection()
                await barrier.wait()
                try:
                    result = await getattr(aio, name)(session, *args, **kwargs)
                except cim_monitoring.MonitoringError as exc:
                    await session.rollback()
                    return exc
                await session.commit()
                return result

        async def all_at_once() -> Sequence[Any]:
            return await asyncio.gather(*(one() for _ in range(count)))

        return list(self.run(all_at_once()))

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._runner.close()

    @contextmanager
    def _entered(self, manager: AbstractAsyncContextManager[T]) -> Iterator[T]:
        """An async context manager entered and left on the runner, from sync code."""
        value = self.run(manager.__aenter__())
        try:
            yield value
        except BaseException as exc:
            if not self.run(manager.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            self.run(manager.__aexit__(None, None, None))


def make_kind(name: str) -> FaceKind:
    return AsyncKind() if name == "async" else FaceKind()
