"""What every ``cim-monitoring`` command prints with, and how it fails.

Commands raise :class:`CliError` (or let domain errors through); :func:`cim_monitoring.cli.app.run`
turns every expected failure into one line on stderr and an exit code: 0 ok, 1 problem found,
2 usage error.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2

# soft_wrap: a message stays one line however narrow the terminal; tables still fit it. No
# markup or highlighting: printed text carries service names, messages and role names verbatim;
# styles are applied through rich.text.Text. Rich styles only a terminal; under NO_COLOR
# (no-color.org) it would still send bold and dim, so no style at all is sent then.
_STYLED: Literal["auto"] | None = None if os.environ.get("NO_COLOR") else "auto"
out = Console(soft_wrap=True, markup=False, highlight=False, color_system=_STYLED)
err = Console(stderr=True, soft_wrap=True, markup=False, highlight=False, color_system=_STYLED)

STATUS_STYLES = {"healthy": "green", "degraded": "yellow", "down": "bold red", None: "dim"}
SEVERITY_STYLES = {"info": "cyan", "warning": "yellow", "critical": "bold red", None: ""}

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


class CliError(Exception):
    """An expected failure, reported as one line with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_PROBLEM) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def usage_error(message: str) -> CliError:
    return CliError(message, EXIT_USAGE)


def service_table(title: str, *, gap: int) -> Table:
    """A table without borders, ``gap`` spaces between columns, whose first column is the
    service: a long name wraps in its column rather than losing its end."""
    table = Table(title=title, box=None, padding=(0, gap, 0, 0), pad_edge=False)
    table.add_column("Service", overflow="fold")
    return table


def progress() -> Progress:
    """A progress bar on stderr, so that stdout keeps only results."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    )
