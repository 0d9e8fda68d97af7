"""Which module may import which (README's Architecture section), over the package, the
revisions, the tests, the benchmarks and the workbench; and that each rule catches a breach."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from declared import ROOT
from import_rules import MAY_IMPORT, Kind, module_name, problems, python_files

PACKAGE = ROOT / "cim_monitoring"
FILES = {
    Kind.LIBRARY: [
        *(p for p in python_files(PACKAGE) if PACKAGE / "cli" not in p.parents),
        ROOT / "alembic" / "env.py",
    ],
    Kind.COMMAND: python_files(PACKAGE / "cli"),
    Kind.REVISION: python_files(ROOT / "alembic" / "versions"),
    Kind.TEST: python_files(ROOT / "tests"),
    Kind.BENCHMARK: python_files(ROOT / "benchmarks"),
    Kind.WORKBENCH: python_files(ROOT / "workbench"),
}


def found(kind: Kind) -> dict[str, set[str]]:
    """Per file of ``kind`` that breaks a rule, its breaches (without line numbers)."""
    breaches = {}
    for path in FILES[kind]:
        lines = problems(path.read_text(), module_name(path), kind)
        if lines:
            breaches[str(path.relative_to(ROOT))] = {re.sub(r"^line \d+: ", "", x) for x in lines}
    return breaches


def documented_parts() -> dict[str, frozenset[str]]:
    """The library's rows of README's Architecture table: part -> what it may import."""
    section = (ROOT / "README.md").read_text().split("\n## Architecture\n")[1].split("\n## ")[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if not line.startswith("| `") or cells[0].startswith(("`cli/`", "`workbench/`")):
            continue
        may = frozenset(re.findall(r"`([a-z_]+)/?`", cells[1]))
        for name in re.findall(r"`([^`]+)`", cells[0].split(" (")[0]):
            part = {"cim_monitoring": "", "alembic/env.py": "_alembic"}.get(name, name.rstrip("/"))
            rows[f"cim_monitoring.{part}".rstrip(".")] = may
    return rows


def test_the_readme_states_the_rules_the_test_enforces() -> None:
    assert documented_parts() == MAY_IMPORT


@pytest.mark.parametrize("kind", list(Kind), ids=[kind.value for kind in Kind])
def test_every_file_keeps_the_import_rules(kind: Kind) -> None:
    assert FILES[kind]
    assert found(kind) == {}


BREACHES = [
    (Kind.LIBRARY, "cim_monitoring.vocabulary", "from cim_monitoring import errors", "only []"),
    (
        Kind.LIBRARY,
        "cim_monitoring.schemas.fields",
        "from cim_monitoring.models import HEALTH_STATUSES",
        "schemas may import only ['vocabulary']",
    ),
    (
        Kind.LIBRARY,
        "cim_monitoring.repository.checks",
        "from cim_monitoring.cli.console import out",
        "never imports the command",
    ),
    (
        Kind.LIBRARY,
        "cim_monitoring.aio",
        "from cim_monitoring.repository._common import CHECKS",
        "only inside the part that defines it",
    ),
    (Kind.LIBRARY, "cim_monitoring.models", "from workbench import fleet", "nothing of the tests"),
    (Kind.LIBRARY, "cim_monitoring.dashboard", "import json", "belongs to no part of MAY_IMPORT"),
    (Kind.COMMAND, "cim_monitoring.cli.purge", "from sqlalchemy import func", "writes no SQL"),
    (
        Kind.COMMAND,
        "cim_monitoring.cli.status",
        "import sqlalchemy as sa\nsa.select(1)",
        "writes no SQL",
    ),
    (
        Kind.COMMAND,
        "cim_monitoring.cli.status",
        "from cim_monitoring import ServiceHealthCheck",
        "no ORM model",
    ),
    (
        Kind.COMMAND,
        "cim_monitoring.cli.purge",
        "from ..repository._common import CHECKS",
        "no private name",
    ),
    (
        Kind.REVISION,
        "cim_monitoring._alembic.versions.x",
        "from cim_monitoring.models import Base",
        "a revision imports only",
    ),
    (Kind.REVISION, "cim_monitoring._alembic.versions.x", "import pydantic", "imports only"),
    (Kind.TEST, "tests.test_x", "from benchmarks.measure import median_ms", "no benchmarks"),
    (
        Kind.TEST,
        "tests.test_x",
        "from cim_monitoring.repository.queries import _LATEST_ALL",
        "no private name",
    ),
    (
        Kind.TEST,
        "tests.test_x",
        "from cim_monitoring.repository import queries\nqueries._LATEST_ALL",
        "no private name",
    ),
    (Kind.BENCHMARK, "benchmarks.run", "from faces import Face", "no faces"),
    (Kind.WORKBENCH, "workbench.fleet", "from benchmarks import run", "no benchmarks"),
]


@pytest.mark.parametrize(("kind", "module", "source", "fragment"), BREACHES)
def test_each_rule_catches_a_breach(kind: Kind, module: str, source: str, fragment: str) -> None:
    [line] = problems(source, module, kind)
    assert fragment in line


def test_what_the_rules_allow_passes(tmp_path: Path) -> None:
    """The other side of each rule: the same kind of import, from where it is allowed."""
    allowed = [
        (Kind.LIBRARY, "cim_monitoring.schemas.fields", "from cim_monitoring import vocabulary"),
        (Kind.LIBRARY, "cim_monitoring.repository.checks", "from ._common import CHECKS"),
        (Kind.COMMAND, "cim_monitoring.cli.purge", "from cim_monitoring import purge_expired"),
        (Kind.COMMAND, "cim_monitoring.cli.app", "from sqlalchemy.exc import DBAPIError"),
        (Kind.REVISION, "x", "import sqlalchemy as sa\nfrom cim_monitoring.errors import E"),
        (Kind.TEST, "tests.test_x", "import cim_monitoring\ncim_monitoring.__version__"),
    ]
    for kind, module, source in allowed:
        assert problems(source, module, kind) == [], (kind, source)
