"""Running the ``cim-monitoring`` command and the host application's ``alembic`` as processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from cim_monitoring import make_engine, migrations

HOST_APP = Path(__file__).resolve().parent / "host_app"


def command_env(cwd: Path, url: URL | None = None) -> dict[str, str]:
    """This process's environment for a run in ``cwd`` against ``url`` (none: embedded)."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CIM_MONITORING_DATA_DIR")
    }
    # Wide enough that Rich tables do not truncate names; cwd without a stray .env file.
    env.update(COLUMNS="200", CWD=str(cwd))
    if url is not None:
        env["DATABASE_URL"] = url.render_as_string(hide_password=False)
    return env


def migrated_env(cwd: Path, url: URL) -> dict[str, str]:
    """:func:`command_env` on ``url``, migrated to head first (in-process: not the subject)."""
    engine = make_engine(url, poolclass=NullPool)
    with engine.begin() as connection:
        migrations.upgrade(connection)
    engine.dispose()
    return command_env(cwd, url)


def cli(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """``cim-monitoring <args>`` through its real entry point, in ``env["CWD"]``."""
    return subprocess.run(
        [sys.executable, "-m", "cim_monitoring.cli", *args],
        env=env,
        cwd=env["CWD"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def host_alembic(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The host application's own ``alembic`` (its ini, its history), from ``env["CWD"]``."""
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(HOST_APP / "alembic.ini"), *args],
        env=env,
        cwd=env["CWD"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result


def one_error_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The failure is ``code`` and one clear ``error:`` line, with no traceback."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]
