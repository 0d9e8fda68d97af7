"""Running the ``alembic`` command line as an operator would, from the repository root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.engine import URL

from cim_monitoring.migrations import alembic_config, script_location

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


_EXTRA_REVISION = '''"""{message}

Revision ID: {revision}
Revises: {down_revision}
"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down_revision}"
branch_labels = None
depends_on = None


def upgrade() -> None:
{upgrade}


def downgrade() -> None:
    raise NotImplementedError
'''


def history_with_extra_revision(
    directory: Path, *, revision: str, message: str, upgrade: Sequence[str]
) -> Path:
    """Copy the real history (and alembic.ini) into ``directory`` with one more revision on top.

    ``upgrade`` is the new revision's ``upgrade()`` body, one statement a line. Returns the
    copied alembic.ini, whose ``script_location`` is the copy.
    """
    scripts = directory / "alembic"
    shutil.copytree(script_location(), scripts, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "alembic.ini", directory / "alembic.ini")
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    (scripts / "versions" / f"zz_{revision}.py").write_text(
        _EXTRA_REVISION.format(
            message=message,
            revision=revision,
            down_revision=head,
            upgrade="\n".join(f"    {line}" for line in upgrade),
        ),
        encoding="utf-8",
    )
    return directory / "alembic.ini"


def upgrade_history(ini: Path, connection: Connection) -> None:
    """``alembic upgrade head`` of the history ``ini`` points at, on ``connection`` (env.py's
    programmatic path, as the copied histories of the fault tests need)."""
    config = Config(str(ini))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
