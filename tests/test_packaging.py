"""Every third-party import is declared in pyproject.toml, where its importer gets it from.

``pip install cim-monitoring`` brings the core dependencies only, so the library (cim_monitoring/
outside cli/, and the migrations that ship inside it) may import nothing else; the command may
also use the ``cli`` extra; tests, benchmarks and their shared workbench anything ``dev`` brings.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from declared import ROOT, requirements
from import_rules import python_files
from packaging.utils import canonicalize_name

PACKAGE = ROOT / "cim_monitoring"
DISTRIBUTIONS = importlib.metadata.packages_distributions()


LIBRARY = [
    path for path in python_files(PACKAGE, ROOT / "alembic") if PACKAGE / "cli" not in path.parents
]
COMMAND = python_files(PACKAGE / "cli")
TESTS_AND_BENCHMARKS = python_files(ROOT / "tests", ROOT / "benchmarks", ROOT / "workbench")


def third_party_imports(path: Path) -> Iterator[str]:
    """Top-level names of what ``path`` imports that are neither stdlib, ours, nor local files."""
    # Where Python finds the tests' and benchmarks' helpers (pytest's rootdir and pythonpath);
    # a plain directory there, like alembic/, does not hide the installed package of its name.
    local_roots = (ROOT, ROOT / "tests", path.parent)
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        for module in modules:
            top = module.partition(".")[0]
            local = any(
                (root / f"{top}.py").is_file() or (root / top / "__init__.py").is_file()
                for root in local_roots
            )
            if top not in sys.stdlib_module_names and top != "cim_monitoring" and not local:
                yield top


def undeclared(files: Iterable[Path], extras: tuple[str, ...]) -> list[str]:
    """One line per import whose distribution the core dependencies plus ``extras`` lack."""
    allowed = {canonicalize_name(requirement.name) for requirement in requirements(*extras)}
    problems = []
    for path in files:
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        for module in sorted(set(third_party_imports(path))):
            distributions = {canonicalize_name(name) for name in DISTRIBUTIONS.get(module, [])}
            if not distributions:
                problems.append(f"{where}: {module} is not installed at all")
            elif not distributions & allowed:
                problems.append(f"{where}: {module} from {', '.join(sorted(distributions))}")
    return problems


@pytest.mark.parametrize(
    ("files", "extras"),
    [(LIBRARY, ()), (COMMAND, ("cli",)), (TESTS_AND_BENCHMARKS, ("dev",))],
    ids=["library-core-only", "command-core-and-cli", "tests-and-benchmarks-dev"],
)
def test_every_import_is_declared_for_its_importer(
    files: list[Path], extras: tuple[str, ...]
) -> None:
    assert files
    assert undeclared(files, extras) == []


def test_a_library_module_importing_the_command_s_dependencies_is_caught(
    tmp_path: Path,
) -> None:
    module = tmp_path / "dashboard.py"
    module.write_text("import sqlalchemy\nimport typer\nfrom rich.table import Table\n")
    problems = undeclared([module], ())
    assert [problem.split(": ", 1)[1] for problem in problems] == [
        "rich from rich",
        "typer from typer",
    ]
    assert undeclared([module], ("cli",)) == []


def test_an_import_of_nothing_installed_is_caught(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text("import no_such_distribution_anywhere\n")
    assert undeclared([module], ("dev",)) == [
        f"{module}: no_such_distribution_anywhere is not installed at all"
    ]
