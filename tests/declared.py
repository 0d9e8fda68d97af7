"""What pyproject.toml declares: the core dependencies, and each extra with ours expanded."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def requirements(*extras: str) -> list[Requirement]:
    """The core dependencies plus ``extras``; ``cim-monitoring[...]`` in an extra is expanded."""
    optional = PROJECT["optional-dependencies"]
    pending = [*PROJECT["dependencies"], *(line for extra in extras for line in optional[extra])]
    found = []
    while pending:
        requirement = Requirement(pending.pop())
        if canonicalize_name(requirement.name) == canonicalize_name(PROJECT["name"]):
            pending.extend(line for extra in requirement.extras for line in optional[extra])
        else:
            found.append(requirement)
    return found
