"""What every ``cim-monitoring`` command shares: which database, errors, durations, output.

Commands raise :class:`CliError` (or let domain errors through); :func:`cim_monitoring.cli.main`
turns every expected failure into one line on stderr and an exit code: 0 ok, 1 problem found,
2 usage error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from cim_monitoring import migrations
from cim_monitoring.config import Settings, redact_url
from cim_monitoring.db import make_engine, make_session_factory
from cim_monitoring.embedded import EmbeddedServer

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2

# soft_wrap: a message stays one line however narrow the terminal; tables still fit it. No
# markup or highlighting: printed text carries service names, messages and role names verbatim;
# styles are applied through rich.text.Text.
out = Console(soft_wrap=True, markup=False, highlight=False)
err = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DISPLAY_UNITS = ((86400, "d"), (3600, "h"), (60, "m"), (1, "s"))


AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


class CliError(Exception):
    """An expected failure, reported as one line with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_PROBLEM) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def usage_error(message: str) -> CliError:
    return CliError(message, EXIT_USAGE)


def parse_duration(value: str | timedelta) -> timedelta:
    """``30s``, ``15m``, ``24h``, ``7d``, ``2w`` or a sum such as ``1h30m``; positive only."""
    if isinstance(value, timedelta):
        return value
    compact = value.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise typer.BadParameter(f"{value!r} is not a duration; write e.g. 30s, 15m, 24h or 7d")
    seconds = sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if seconds == 0:
        raise typer.BadParameter(f"{value!r} is zero; a duration must be positive")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise typer.BadParameter(f"{value!r} is too long a duration") from None


def duration_label(span: timedelta) -> str:
    """A window as people write it: ``24h``, ``90m``, ``7d`` (days from two on)."""
    seconds = int(span.total_seconds())
    for size, unit in _DISPLAY_UNITS:
        if seconds % size == 0 and seconds >= size * (2 if unit == "d" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_duration(span: timedelta) -> str:
    """The largest unit and the next one, for a dashboard: ``42s``, ``5m 3s``, ``2d 4h``."""
    seconds = max(int(span.total_seconds()), 0)
    for (size, unit), (minor_size, minor_unit) in pairwise(_DISPLAY_UNITS):
        if seconds >= size:
            major, rest = divmod(seconds, size)
            return f"{major}{unit} {rest // minor_size}{minor_unit}"
    return f"{seconds}s"


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
    with database(settings) as engine, make_session_factory(engine).begin() as session:
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


def database_now(connection: Connection) -> datetime:
    """The server's clock: ages and windows agree with ``created_at`` defaults."""
    return connection.execute(select(func.now())).scalar_one()


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


def progress() -> Progress:
    """A progress bar on stderr, so that stdout keeps only results."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    )
