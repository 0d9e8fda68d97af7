"""``alerts``: list open alerts, acknowledge or resolve one by id."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Protocol

import typer
from rich.table import Table
from rich.text import Text
from sqlalchemy.orm import Session

from cim_monitoring.cli.console import (
    EXIT_USAGE,
    SEVERITY_STYLES,
    AsJson,
    CliError,
    out,
    usage_error,
)
from cim_monitoring.cli.database import database_now, unit_of_work
from cim_monitoring.cli.durations import format_duration
from cim_monitoring.errors import AlertNotFound
from cim_monitoring.repository import acknowledge_alert, active_alerts, resolve_alert
from cim_monitoring.schemas import AlertOut

app = typer.Typer(
    help="Open alerts: list them, or acknowledge or resolve one by id.",
    invoke_without_command=True,
)


@app.callback()
def alerts(
    context: typer.Context,
    service: Annotated[str | None, typer.Option(help="Only this service's alerts.")] = None,
    severity: Annotated[
        str | None, typer.Option(help="Only this severity: info, warning or critical.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """List open (active or acknowledged) alerts, newest first."""
    if context.invoked_subcommand is not None:
        return
    with unit_of_work() as session:
        now = database_now(session.connection())
        found = active_alerts(session, service=service, severity=severity)
    if as_json:
        typer.echo(json.dumps([alert.model_dump(mode="json") for alert in found], indent=2))
        return
    if not found:
        out.print("No open alerts.")
        return
    table = Table(title=f"Open alerts ({len(found)})")
    for heading in ("Id", "Severity", "Service", "Type", "Status", "Count", "Since"):
        table.add_column(heading, no_wrap=True)
    table.add_column("Message", overflow="fold")
    for alert in found:
        table.add_row(
            str(alert.id),
            Text(alert.severity, style=SEVERITY_STYLES[alert.severity]),
            alert.service_name,
            alert.alert_type,
            alert.status,
            str(alert.occurrence_count),
            format_duration(now - alert.created_at),
            alert.message,
        )
    out.print(table)


class _Change(Protocol):
    """The shape of ``acknowledge_alert`` and ``resolve_alert``."""

    def __call__(self, session: Session, alert_id: uuid.UUID, *, by: str) -> AlertOut: ...


AlertId = Annotated[str, typer.Argument(help="The alert's id, as `cim-monitoring alerts` shows.")]
By = Annotated[str, typer.Option("--by", help="Who does it (recorded on the alert).")]


@app.command("ack")
def ack(alert_id: AlertId, by: By) -> None:
    """Acknowledge an active alert: someone is on it."""
    _transition(alert_id, by, acknowledge_alert, "acknowledged")


@app.command("resolve")
def resolve(alert_id: AlertId, by: By) -> None:
    """Resolve an open alert."""
    _transition(alert_id, by, resolve_alert, "resolved")


def _transition(raw_id: str, by: str, change: _Change, verb: str) -> None:
    alert_id = _parse_alert_id(raw_id)
    try:
        with unit_of_work() as session:
            alert = change(session, alert_id, by=by)
    except AlertNotFound as exc:
        # The id was given on the command line: an unknown one is a usage error, like a typo.
        raise CliError(f"{exc}; list open alerts with `cim-monitoring alerts`", EXIT_USAGE) from exc
    out.print(f"alert {alert.id} ({alert.service_name}/{alert.alert_type}) {verb} by {by}")


def _parse_alert_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw.strip())
    except ValueError:
        raise usage_error(
            f"{raw!r} is not an alert id; ids look like 9b2f0c4e-6a1d-4e7b-8f3a-2c5d9e1b7a60"
        ) from None
