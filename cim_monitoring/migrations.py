"""Running the Alembic migrations from code, and the lock that serialises them.

Several application instances may run ``alembic upgrade head`` at once when they deploy; a
session-level advisory lock lets one of them migrate while the others wait (bounded) and then
find nothing left to do.
"""

from __future__ import annotations

import time
from pathlib import Path

from alembic import op
from alembic.config import Config
from sqlalchemy import Connection, text

from cim_monitoring.errors import MigrationError

# "cim-mon" in ASCII: a fixed key so every process of every version contends for the same lock.
MIGRATION_LOCK_KEY = 0x63696D2D6D6F6E
_POLL_SECONDS = 0.1
_PACKAGE_DIR = Path(__file__).resolve().parent


def script_location() -> Path:
    """Where the revisions live: inside the wheel, or the checkout's top-level ``alembic/``."""
    for candidate in (_PACKAGE_DIR / "_alembic", _PACKAGE_DIR.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise MigrationError(f"cannot find the migration scripts next to {_PACKAGE_DIR}")


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic :class:`Config` for this package's revisions, independent of the cwd.

    With ``connection``, env.py runs on it (the cookbook's shared-connection recipe) instead
    of opening its own from ``DATABASE_URL``.
    """
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def acquire_migration_lock(connection: Connection, *, timeout: float) -> None:
    """Take the migration advisory lock on ``connection`` or raise :class:`MigrationError`.

    Inside a transaction the lock is transaction-scoped (released with it); otherwise it is
    session-scoped and :func:`release_migration_lock` must follow. Polls rather than blocks so
    the wait is bounded without touching the session's ``lock_timeout``.
    """
    function = (
        "pg_try_advisory_xact_lock" if connection.in_transaction() else "pg_try_advisory_lock"
    )
    statement = text(f"SELECT {function}(:key)")
    deadline = time.monotonic() + timeout
    while True:
        if connection.execute(statement, {"key": MIGRATION_LOCK_KEY}).scalar_one():
            return
        if time.monotonic() >= deadline:
            raise MigrationError(
                f"another process has been migrating this database for over {timeout:g}s; "
                "retry when it finishes, or raise MIGRATION_LOCK_TIMEOUT"
            )
        time.sleep(_POLL_SECONDS)


def release_migration_lock(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})


def declare_lint_exceptions(exceptions: dict[str, str]) -> None:
    """Write ``-- squawk-ignore-file <rule> -- <reason>`` lines into an ``--sql`` rendering.

    Called from a revision's ``upgrade()``; online runs are unaffected. squawk lints each
    revision's rendering (tests/test_migration_lint.py), and an exception must carry its reason.
    """
    migration = op.get_context()
    if migration.as_sql:
        for rule, reason in exceptions.items():
            migration.impl.static_output(f"-- squawk-ignore-file {rule} -- {reason}")
