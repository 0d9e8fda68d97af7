"""``cim-monitoring db``: the embedded PostgreSQL as a server other tools can share.

``export DATABASE_URL=$(cim-monitoring db url)`` points ``alembic`` and the application at the
same embedded database that the other commands use when ``DATABASE_URL`` is not set.
"""

from __future__ import annotations

import typer

from cim_monitoring.cli.console import EXIT_PROBLEM, err
from cim_monitoring.cli.embedded import EmbeddedServer
from cim_monitoring.config import Settings

app = typer.Typer(
    help="Start, locate or stop the embedded PostgreSQL (used when DATABASE_URL is not set).",
    no_args_is_help=True,
)


def _server() -> EmbeddedServer:
    settings = Settings()
    if settings.database_url is not None:
        # The db commands always mean the embedded server; say so rather than surprise.
        err.print(
            "cim-monitoring: note: DATABASE_URL is set, so the other commands use that database, "
            "not this embedded one"
        )
    return EmbeddedServer(settings.data_dir)


@app.command()
def start() -> None:
    """Start the embedded server and leave it running; print its URL."""
    server = _server()
    url = server.start_and_keep()
    typer.echo(url.render_as_string())
    err.print(
        f"cim-monitoring: embedded PostgreSQL running (data in {server.data_dir}); "
        "stop it with `cim-monitoring db stop`"
    )


@app.command()
def url() -> None:
    """Print the URL of the running embedded server (exit 1 when it is not running)."""
    running = _server().running_url()
    if running is None:
        err.print(
            "cim-monitoring: the embedded PostgreSQL is not running: "
            "start it with `cim-monitoring db start`"
        )
        raise typer.Exit(EXIT_PROBLEM)
    typer.echo(running.render_as_string())


@app.command()
def stop() -> None:
    """Stop the embedded server, also when another command started it."""
    server = _server()
    stopped = server.stop()
    state = "stopped" if stopped else "was not running"
    err.print(f"cim-monitoring: embedded PostgreSQL {state} ({server.data_dir})")
