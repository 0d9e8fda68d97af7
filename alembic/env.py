"""Alembic environment for cim-monitoring's own history (``alembic`` in this repository).

Applications do not need it: they call :func:`cim_monitoring.migrations.upgrade` or run
``cim-monitoring migrate``. The URL comes from ``DATABASE_URL`` (via Settings), never from
alembic.ini; a connection handed in through ``config.attributes["connection"]`` takes
precedence. Online runs go through the same :func:`~cim_monitoring.migrations.migrating` block
as the library's runner: our own version table, the migration lock, legacy adoption, one
transaction and the protection check.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from logging.config import fileConfig

from alembic import context
from alembic.operations import MigrationScript
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from cim_monitoring.config import Settings
from cim_monitoring.db import is_unavailable, make_engine
from cim_monitoring.errors import MonitoringError
from cim_monitoring.migrations import Migration, configure_options, migrating

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


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


def run_migrations_offline() -> None:
    """``--sql``: render the script; a URL is optional since only the dialect matters."""
    settings = Settings()
    options = configure_options(Migration())
    where = (
        {"url": settings.sqlalchemy_url()}
        if settings.database_url is not None
        else {"dialect_name": "postgresql"}
    )
    context.configure(**where, literal_binds=True, **options)
    with context.begin_transaction():
        context.run_migrations()


def run_on(connection: Connection) -> None:
    with migrating(connection) as migration:
        context.configure(
            connection=connection,
            process_revision_directives=process_revision_directives,
            **configure_options(migration),
        )
        with context.begin_transaction():
            context.run_migrations()


def run_migrations_online() -> None:
    shared = config.attributes.get("connection")
    # Programmatic callers (tests) get the exceptions themselves.
    if isinstance(shared, Engine):
        with shared.connect() as connection:
            run_on(connection)
        return
    if shared is not None:
        run_on(shared)
        return
    try:
        engine = make_engine(poolclass=NullPool)
        with engine.connect() as connection:
            run_on(connection)
    except MonitoringError as exc:
        # One actionable line instead of a traceback: these are the operator's to fix.
        sys.exit(f"cim-monitoring: {exc}")
    except DBAPIError as exc:
        if is_unavailable(exc):
            sys.exit(f"cim-monitoring: cannot reach the database: {_first_line(exc)}")
        raise


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0]


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
