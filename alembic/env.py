"""Alembic environment for cim-monitoring.

The URL comes from ``DATABASE_URL`` (via Settings), never from alembic.ini; a connection handed
in through ``config.attributes["connection"]`` takes precedence (tests, the CLI). Online runs
hold an advisory lock so concurrent ``alembic upgrade head`` calls apply each revision once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.operations import MigrationScript
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from cim_monitoring.config import Settings
from cim_monitoring.db import is_unavailable, make_engine
from cim_monitoring.errors import MonitoringError
from cim_monitoring.migrations import acquire_migration_lock, release_migration_lock
from cim_monitoring.models import Base

LOCK_NOT_AVAILABLE = "55P03"

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    """Own only this package's tables: the host app's (processing_jobs, ...) share the database."""
    if type_ == "table":
        return name in target_metadata.tables
    return True


def process_revision_directives(
    migration_context: MigrationContext,
    revision: str | Iterable[str | None] | Iterable[str],
    directives: list[MigrationScript],
) -> None:
    """Write no revision file when autogenerate finds nothing to do (Alembic cookbook)."""
    if getattr(config.cmd_opts, "autogenerate", False):
        script = directives[0]
        if script.upgrade_ops is not None and script.upgrade_ops.is_empty():
            directives[:] = []


CONFIGURE_OPTIONS: dict[str, Any] = {
    "target_metadata": target_metadata,
    "include_name": include_name,
    "compare_type": True,
    "compare_server_default": True,
    "process_revision_directives": process_revision_directives,
    "transaction_per_migration": True,
}


def run_migrations_offline() -> None:
    """``--sql``: render the script; a URL is optional since only the dialect matters."""
    settings = Settings()
    if settings.database_url is not None:
        context.configure(url=settings.sqlalchemy_url(), literal_binds=True, **CONFIGURE_OPTIONS)
    else:
        context.configure(dialect_name="postgresql", literal_binds=True, **CONFIGURE_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_on(connection: Connection, *, lock_timeout: float) -> None:
    owns_transaction = not connection.in_transaction()
    acquire_migration_lock(connection, timeout=lock_timeout)
    if owns_transaction:
        # The lock query autobegan a transaction; end it so each revision gets its own.
        connection.commit()
    try:
        context.configure(connection=connection, **CONFIGURE_OPTIONS)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if owns_transaction:
            if connection.in_transaction():
                connection.rollback()
            release_migration_lock(connection)
            connection.commit()


def run_migrations_online() -> None:
    settings = Settings()
    shared = config.attributes.get("connection")
    # Programmatic callers (tests, the CLI) get the exceptions themselves.
    if isinstance(shared, Engine):
        with shared.connect() as connection:
            run_on(connection, lock_timeout=settings.migration_lock_timeout)
        return
    if shared is not None:
        run_on(shared, lock_timeout=settings.migration_lock_timeout)
        return
    try:
        engine = make_engine(settings=settings, poolclass=NullPool)
        with engine.connect() as connection:
            run_on(connection, lock_timeout=settings.migration_lock_timeout)
    except MonitoringError as exc:
        # One actionable line instead of a traceback: these are the operator's to fix.
        sys.exit(f"cim-monitoring: {exc}")
    except DBAPIError as exc:
        if is_unavailable(exc):
            sys.exit(f"cim-monitoring: cannot reach the database: {_first_line(exc)}")
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            sys.exit(
                "cim-monitoring: a migration gave up waiting for a table lock (lock_timeout): "
                f"{_first_line(exc)}; a long-running transaction holds it, retry when it ends"
            )
        raise


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0]


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
