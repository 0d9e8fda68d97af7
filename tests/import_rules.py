"""The import rules of README's Architecture section, as data, and the ast walk that checks them.

Nothing is imported to check it: every ``import`` and ``from ... import`` statement of a file
(``TYPE_CHECKING`` blocks included) is resolved to the modules it names, and each rule of the
file's kind says which of those it may not name.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from declared import ROOT

PACKAGE = "cim_monitoring"

# What each part of the library may import of ours (besides itself); a module belongs to the
# longest entry that names it or a package above it. A new module or a new dependency between
# parts is a decision: write it here and in README's Architecture section.
MAY_IMPORT: dict[str, frozenset[str]] = {
    f"{PACKAGE}.errors": frozenset(),
    f"{PACKAGE}.vocabulary": frozenset(),
    f"{PACKAGE}.config": frozenset({"errors"}),
    f"{PACKAGE}.histogram": frozenset({"vocabulary"}),
    f"{PACKAGE}.models": frozenset({"errors", "vocabulary"}),
    f"{PACKAGE}.schemas": frozenset({"vocabulary"}),
    f"{PACKAGE}.db": frozenset({"config", "errors"}),
    f"{PACKAGE}.objects": frozenset({"models"}),
    f"{PACKAGE}.partitions": frozenset(),
    f"{PACKAGE}.migrations": frozenset(
        {"config", "db", "errors", "models", "objects", "partitions"}
    ),
    f"{PACKAGE}._alembic": frozenset({"config", "db", "errors", "migrations"}),
    f"{PACKAGE}.repository": frozenset(
        {"db", "errors", "histogram", "models", "partitions", "schemas", "vocabulary"}
    ),
    f"{PACKAGE}.verify": frozenset({"db", "migrations", "models", "objects", "schemas"}),
    f"{PACKAGE}.aio": frozenset({"config", "db", "errors", "repository"}),
    # The front door re-exports the public API.
    PACKAGE: frozenset(
        {"config", "db", "errors", "models", "objects", "repository", "schemas", "verify"}
    ),
}
# What a revision may import: history must not change when the package does.
REVISION_MAY_IMPORT = frozenset({"alembic", "sqlalchemy", f"{PACKAGE}.errors"})
# SQL the command must not write: it calls the library, which owns every statement.
SQL_CONSTRUCTS = frozenset({"text", "select", "func", "insert", "update", "delete"})
# What the tests import as top-level modules: the files and packages beside them.
TEST_HELPERS = frozenset(
    path.stem
    for path in (ROOT / "tests").iterdir()
    if path.suffix == ".py" or (path / "__init__.py").is_file()
)
DEV_ONLY = frozenset({"benchmarks", "workbench"}) | TEST_HELPERS


class Kind(Enum):
    LIBRARY = "library"
    COMMAND = "command"
    REVISION = "revision"
    TEST = "test"
    BENCHMARK = "benchmark"
    WORKBENCH = "workbench"


@dataclass(frozen=True)
class Imported:
    """One module an import statement names, the name taken from it (None: the module itself)
    and the local name the statement binds."""

    module: str
    name: str | None
    bound: str
    line: int


def python_files(*folders: Path) -> list[Path]:
    return sorted(path for folder in folders for path in folder.rglob("*.py"))


def module_name(path: Path) -> str:
    """The dotted name of a file (alembic/ ships as ``cim_monitoring._alembic``); a package's
    ``__init__`` keeps its name, so that relative imports resolve from the package itself."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "alembic":
        parts = [PACKAGE, "_alembic", *parts[1:]]
    return ".".join(parts)


def is_module(dotted: str) -> bool:
    """Whether ``dotted`` is a module of the package (not a name defined in one)."""
    if not _ours(dotted):
        return False
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported(tree: ast.AST, module: str) -> Iterator[Imported]:
    """Every module (and name taken from it) that ``tree``, the module ``module``, imports."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.partition(".")[0]
                yield Imported(alias.name, None, bound, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: -node.level]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                bound = alias.asname or alias.name
                if is_module(f"{base}.{alias.name}"):
                    yield Imported(f"{base}.{alias.name}", None, bound, node.lineno)
                else:
                    yield Imported(base, alias.name, bound, node.lineno)


def problems(source: str, module: str, kind: Kind) -> list[str]:
    """One line per import of ``source`` (the module ``module``) that breaks a rule of ``kind``."""
    tree = ast.parse(source)
    items = list(imported(tree, module))
    found = [
        f"line {item.line}: {_spelled(item)}: {why}"
        for item in items
        if (why := _RULES[kind](item, module)) is not None
    ]
    found += [
        f"line {line}: {attribute}: {why}"
        for line, attribute, why in _attributes(tree, items, kind)
    ]
    if kind is Kind.LIBRARY and _part(module) is None:
        found.append(f"{module} belongs to no part of MAY_IMPORT: say what it may import")
    return found


def _spelled(item: Imported) -> str:
    return item.module if item.name is None else f"{item.name} from {item.module}"


def _ours(module: str) -> bool:
    return module == PACKAGE or module.startswith(f"{PACKAGE}.")


def _part(module: str) -> str | None:
    """The part of the library a module of ours belongs to: its entry in MAY_IMPORT. The front
    door's entry covers ``cim_monitoring`` itself only, not every module below it."""
    module = module.removesuffix(".__init__")
    candidates = [
        key
        for key in MAY_IMPORT
        if module == key or (key != PACKAGE and module.startswith(f"{key}."))
    ]
    return max(candidates, key=len) if candidates else None


def _short(part: str) -> str:
    return part.removeprefix(f"{PACKAGE}.")


def _private(item: Imported) -> bool:
    names = [*item.module.split("."), *([item.name] if item.name else [])]
    return any(_is_private(name) for name in names)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _top(item: Imported) -> str:
    return item.module.partition(".")[0]


def _library(item: Imported, module: str) -> str | None:
    if _top(item) in DEV_ONLY:
        return "the library imports nothing of the tests, benchmarks or workbench"
    if not _ours(item.module):
        return None
    own, target = _part(module), _part(item.module)
    if target is None and item.module.startswith(f"{PACKAGE}.cli"):
        return "the library never imports the command"
    if _private(item) and target != own:
        return "a private name is imported only inside the part that defines it"
    if target == own or (own and target and _short(target) in MAY_IMPORT[own]):
        return None
    return f"{_short(own or module)} may import only {sorted(MAY_IMPORT.get(own or '', ()))}"


def _command(item: Imported, module: str) -> str | None:
    if _top(item) in DEV_ONLY:
        return "the command imports nothing of the tests, benchmarks or workbench"
    if item.module == "sqlalchemy" or item.module.startswith("sqlalchemy."):
        if item.name in SQL_CONSTRUCTS:
            return "the command writes no SQL: the library owns every statement"
        return None
    if not _ours(item.module) or item.module.startswith(f"{PACKAGE}.cli"):
        return None
    if item.module == f"{PACKAGE}.models" or item.name in MODELS:
        return "the command imports no ORM model: it calls the library"
    if _private(item):
        return "the command imports no private name of the library"
    return None


def _revision(item: Imported, _: str) -> str | None:
    allowed = _top(item) in sys.stdlib_module_names or any(
        item.module == name or item.module.startswith(f"{name}.") for name in REVISION_MAY_IMPORT
    )
    return None if allowed else f"a revision imports only {sorted(REVISION_MAY_IMPORT)}"


def _dev(forbidden: frozenset[str], who: str) -> Callable[[Imported, str], str | None]:
    def rule(item: Imported, _: str) -> str | None:
        if _top(item) in forbidden:
            return f"{who} import no {_top(item)}"
        if _ours(item.module) and _private(item):
            return f"{who} import no private name of the package"
        return None

    return rule


_RULES: dict[Kind, Callable[[Imported, str], str | None]] = {
    Kind.LIBRARY: _library,
    Kind.COMMAND: _command,
    Kind.REVISION: _revision,
    Kind.TEST: _dev(frozenset({"benchmarks"}), "tests"),
    Kind.BENCHMARK: _dev(TEST_HELPERS, "benchmarks"),
    Kind.WORKBENCH: _dev(TEST_HELPERS | {"benchmarks"}, "the workbench and benchmarks"),
}


def _attributes(tree: ast.AST, items: list[Imported], kind: Kind) -> Iterator[tuple[int, str, str]]:
    """``x._y`` where ``x`` an import of ours bound (a private name reached late), and, in the
    command, ``sqlalchemy.select`` and the like."""
    ours = {item.bound for item in items if _ours(item.module)}
    sql = {item.bound for item in items if item.name is None and _top(item) == "sqlalchemy"}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        root = node.value
        while isinstance(root, ast.Attribute):
            root = root.value
        if not isinstance(root, ast.Name):
            continue
        if root.id in ours and _is_private(node.attr) and kind is not Kind.LIBRARY:
            yield node.lineno, ast.unparse(node), "no private name of the package"
        if kind is Kind.COMMAND and root.id in sql and node.attr in SQL_CONSTRUCTS:
            yield node.lineno, ast.unparse(node), "the command writes no SQL"


# The ORM classes, by name: the front door re-exports some of them.
MODELS = frozenset(
    node.name
    for node in ast.walk(ast.parse((ROOT / PACKAGE / "models.py").read_text()))
    if isinstance(node, ast.ClassDef)
)
