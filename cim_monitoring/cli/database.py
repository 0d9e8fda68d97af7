"""Which database a command works on (``DATABASE_URL`` or the embedded server), and its schema.

A command opens :func:`database` (an Engine) or :func:`unit_of_work` (one transaction on a
migrated database, as :func:`migrated_session` opens on an Engine); :func:`require_migrated`
refuses a database that is not at this package's head, with the fix; ``migrate`` and ``demo``
bring it there with :func:`apply_migrations`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from cim_monitoring import migrations
from cim_monitoring.cli.console import CliError, err
from cim_monitoring.cli.embedded import EmbeddedServer
from cim_monitoring.config import Settings, redact_url
from cim_monitoring.db import make_engine, make_session_factory


@contextmanager
def database(settings: Settings | None = None) -> Iterator[Engine]:
    """An Engine on ``DATABASE_URL``, or on the embedded server when it is not set.

    Says once, on stderr, which database it is. The embedded server is started on demand and
    stopped afterwards unless ``db start`` keeps it (or another command still uses it).
    """
    settings = settings or Settings()
    if settings.database_url is not None:
        url = settings.sqlalchemy_url()
        err.print(f"cim-monitoring: using {redact_url(url)}")
        with _engine(url, settings) as engine:
            yield engine
        return
    embedded = EmbeddedServer(settings.data_dir)
    with embedded.in_use() as url:
        err.print(
            f"cim-monitoring: using embedded PostgreSQL {redact_url(url)} "
            f"(data in {embedded.data_dir}; set DATABASE_URL to use another database)"
        )
        with _engine(url, settings) as engine:
            yield engine


@contextmanager
def unit_of_work(settings: Settings | None = None) -> Iterator[Session]:
    """One transaction on a migrated database: commits when the block ends normally."""
    with database(settings) as engine, migrated_session(engine) as session:
        yield session


@contextmanager
def migrated_session(engine: Engine) -> Iterator[Session]:
    """One transaction on ``engine``, refused unless its database is at head."""
    with make_session_factory(engine).begin() as session:
        require_migrated(session.connection())
        yield session


@contextmanager
def _engine(url: URL, settings: Settings) -> Iterator[Engine]:
    # One short-lived process: no pool to keep warm, nothing left connected when it ends.
    engine = make_engine(url, settings=settings, poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def require_migrated(connection: Connection) -> None:
    """Refuse to go on, with the fix, unless the database is at this package's head."""
    found = migrations.state(connection)
    if found.state is not migrations.State.AT_HEAD:
        raise CliError(f"{found.describe()}: {found.fix}")


def apply_migrations(engine: Engine) -> list[str]:
    """Upgrade to head; one line per revision adopted from an older version or applied."""
    before = migrations.state(engine)
    applied = migrations.upgrade(engine)
    adopted = (
        [
            f"adopted revision {', '.join(before.current)} from "
            f"{migrations.LEGACY_VERSION_TABLE} into {migrations.VERSION_TABLE}"
        ]
        if before.state is migrations.State.LEGACY
        else []
    )
    return adopted + [f"applied {rev}  {migrations.describe(rev)}" for rev in applied]
