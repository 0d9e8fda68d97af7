"""Running the ``alembic`` command line as an operator would, from the repository root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import URL

ROOT = Path(__file__).resolve().parent.parent


def alembic_env(url: URL | None, *, lock_wait: float = 120) -> dict[str, str]:
    """This process's environment with ``DATABASE_URL`` set to ``url``, or removed for None."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    if url is not None:
        env["DATABASE_URL"] = url.render_as_string(hide_password=False)
    env["MIGRATION_LOCK_TIMEOUT"] = f"{lock_wait:g}"
    return env


def alembic_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "alembic", *args]


def run_alembic(
    *args: str, url: URL | None = None, lock_wait: float = 120, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        alembic_command(*args),
        cwd=ROOT,
        env=alembic_env(url, lock_wait=lock_wait),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
