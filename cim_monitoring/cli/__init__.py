"""The ``cim-monitoring`` command; it needs the ``cli`` extra (Typer, Rich, the embedded server).

``pip install cim-monitoring`` brings the library alone, so this module imports nothing of the
extra: :func:`main` loads the command only when it runs, and without the extra says in one line
how to get it instead of failing with a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

INSTALL_HINT = "pip install 'cim-monitoring[cli]'"


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The console-script entry point."""
    try:
        from cim_monitoring.cli.app import run
    except ModuleNotFoundError as exc:
        # Importing this package imported the library already: what is missing now is something
        # only the command needs, which installing the extra brings; one of ours is a bug.
        missing = (exc.name or "").partition(".")[0]
        if missing in ("", "cim_monitoring"):
            raise
        sys.exit(f"cim-monitoring: {missing} is missing; the command needs {INSTALL_HINT}")
    sys.exit(run(argv))
