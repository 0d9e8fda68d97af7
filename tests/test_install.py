"""The package as users get it: the built wheel in a fresh virtual environment.

No network: the wheel is built once, without build isolation, and installed with ``--no-deps``;
the new environment reaches dependencies already installed here through a ``.pth`` line. A
directory added that way is not searched for ``.pth`` files itself, so this checkout's editable
finder does not come along: the package can only be the wheel's copy.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
from command import ok
from declared import PROJECT, ROOT, requirements
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from sqlalchemy import inspect
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from cim_monitoring import make_engine
from cim_monitoring.cli import INSTALL_HINT

# What the new environment's Python reports about the package it imports.
PROBE = """
import importlib.util, json, cim_monitoring
print(json.dumps({
    "file": cim_monitoring.__file__,
    "version": cim_monitoring.__version__,
    "typer": importlib.util.find_spec("typer") is not None,
}))
"""


def run(
    *command: str | Path, cwd: Path | None = None, database_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    # Nothing of this checkout's environment may point the new venv back at the checkout.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "VIRTUAL_ENV", "DATABASE_URL", "CIM_MONITORING_DATA_DIR")
    }
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # From a copy: building in the checkout would leave build/ and an egg-info there.
    source = tmp_path_factory.mktemp("source")
    junk = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, source, ignore=junk, dirs_exist_ok=True)
    dist = tmp_path_factory.mktemp("dist")
    ok(
        run(
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index"),
            *("--no-build-isolation", "--wheel-dir", dist, source),
        )
    )
    (built,) = dist.glob("cim_monitoring-*.whl")
    return built


def install(wheel: Path, venv: Path, dependencies: list[Path]) -> Path:
    """A venv holding ``wheel`` alone, seeing ``dependencies`` through a .pth; its site dir."""
    ok(run(sys.executable, "-m", "venv", "--without-pip", venv))
    python = venv / "bin" / "python"
    ok(
        run(
            *(sys.executable, "-m", "pip", "--python", python, "install", "--quiet"),
            *("--no-deps", "--no-index", wheel),
        )
    )
    site_packages = Path(
        ok(run(python, "-c", "import site; print(site.getsitepackages()[0])")).stdout.strip()
    )
    (site_packages / "dependencies.pth").write_text("".join(f"{path}\n" for path in dependencies))
    return site_packages


def probe(venv: Path, cwd: Path) -> dict[str, object]:
    result: dict[str, object] = json.loads(
        ok(run(venv / "bin" / "python", "-c", PROBE, cwd=cwd)).stdout
    )
    return result


def core_closure() -> list[importlib.metadata.Distribution]:
    """The installed distributions that ``pip install cim-monitoring`` would bring."""
    pending = [(requirement.name, {""} | requirement.extras) for requirement in requirements()]
    found: dict[str, importlib.metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        name, extras = pending.pop()
        distribution = importlib.metadata.distribution(name)
        key = canonicalize_name(distribution.metadata["Name"])
        if (key, frozenset(extras)) in seen:
            continue
        seen.add((key, frozenset(extras)))
        found[key] = distribution
        for line in distribution.requires or []:
            needed = Requirement(line)
            if needed.marker is None or any(needed.marker.evaluate({"extra": e}) for e in extras):
                pending.append((needed.name, {""} | needed.extras))
    return list(found.values())


def core_only(farm: Path) -> Path:
    """A directory with links to exactly the core closure's files in this venv's site dir."""
    farm.mkdir()
    for distribution in core_closure():
        for top in {file.parts[0] for file in distribution.files or [] if file.parts[0] != ".."}:
            link = farm / top
            if not link.exists():
                link.symlink_to(Path(str(distribution.locate_file(top))))
    return farm


def test_without_the_cli_extra_the_library_imports_and_the_command_says_how_to_get_it(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    site_packages = install(wheel, venv, [core_only(tmp_path / "core-dependencies")])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    imported = probe(venv, elsewhere)
    assert Path(str(imported["file"])).is_relative_to(site_packages)
    assert imported["typer"] is False, "the cli extra's packages must be out of reach"
    assert imported["version"] == PROJECT["version"]

    result = run(venv / "bin" / "cim-monitoring", "migrate", cwd=elsewhere)
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert INSTALL_HINT in line


def test_the_installed_wheel_migrates_a_database_from_another_directory(
    wheel: Path, tmp_path: Path, empty_database_url: URL
) -> None:
    venv = tmp_path / "venv"
    site_packages = install(wheel, venv, [Path(path) for path in site.getsitepackages()])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    imported = probe(venv, elsewhere)
    assert Path(str(imported["file"])).is_relative_to(site_packages)
    assert not Path(str(imported["file"])).is_relative_to(ROOT)
    assert imported["version"] == PROJECT["version"]

    url = empty_database_url.render_as_string(hide_password=False)
    migrated = ok(run(venv / "bin" / "cim-monitoring", "migrate", cwd=elsewhere, database_url=url))
    assert migrated.stdout.startswith("applied ")

    engine = make_engine(empty_database_url, poolclass=NullPool)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"service_health_checks", "alert_events"} <= tables
