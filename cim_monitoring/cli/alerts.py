"""``alerts``: list open alerts, acknowledge or resolve one by its id or a unique prefix."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Protocol

import typer
from pydantic import TypeAdapter, ValidationError
from rich.text import Text
from sqlalchemy.orm import Session

from cim_monitoring import (
    AlertIdPrefix,
    AlertOut,
    acknowledge_alert,
    active_alerts,
    alerts_by_id_prefix,
    database_now,
    resolve_alert,
)
from cim_monitoring.cli.console import SEVERITY_STYLES, AsJson, out, usage_error
from cim_monitoring.cli.database import unit_of_work
from cim_monitoring.cli.durations import format_age

# As short as git's abbreviated hashes: unique among open alerts but for a ~1e-9 chance, and
# `alerts ack` says so when a prefix is not unique.
ID_SHOWN = 8
HEADINGS = ("Id", "Severity", "Service", "Type", "Status", "Count", "Age")
RIGHT_ALIGNED = frozenset({"Count", "Age"})
# How many alerts an ambiguous prefix names.
CANDIDATES = 5

app = typer.Typer(
    help="Open alerts: list them, or acknowledge or resolve one by its id or a unique prefix.",
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
        now = database_now(session)
        found = active_alerts(session, service=service, severity=severity)
    if as_json:
        typer.echo(json.dumps([alert.model_dump(mode="json") for alert in found], indent=2))
    elif found:
        render_alerts(found, now)
    else:
        out.print("No open alerts.")


def render_alerts(found: Sequence[AlertOut], now: datetime) -> None:
    """Two lines per alert: the columns that identify it, never cut, then its message,
    indented and cut at the end of the line."""
    rows = [
        [
            Text(str(alert.id)[:ID_SHOWN]),
            Text(alert.severity, style=SEVERITY_STYLES[alert.severity]),
            Text(alert.service_name),
            Text(alert.alert_type),
            Text(alert.status),
            Text(str(alert.occurrence_count)),
            Text(format_age(now - alert.created_at)),
        ]
        for alert in found
    ]
    headings = [Text(heading, style="bold") for heading in HEADINGS]
    widths = [max(cell.cell_len for cell in column) for column in zip(headings, *rows, strict=True)]
    # Two spaces between columns where they fit the terminal, else one: long names and
    # "acknowledged" still fit 80 columns without wrapping.
    gap = " " * (2 if sum(widths) + 2 * (len(widths) - 1) <= out.width else 1)
    out.print(Text(f"Open alerts ({len(found)})", style="bold"))
    out.print(_line(headings, widths, gap))
    indent = " " * (widths[0] + len(gap))
    for alert, row in zip(found, rows, strict=True):
        out.print(_line(row, widths, gap))
        # One line of it, whitespace and all: a message's own line breaks would break the list.
        message = Text(indent + " ".join(alert.message.split()))
        out.print(message, no_wrap=True, overflow="ellipsis", soft_wrap=False)


def _line(cells: Sequence[Text], widths: Sequence[int], gap: str) -> Text:
    line = Text()
    for index, (heading, cell, width) in enumerate(zip(HEADINGS, cells, widths, strict=True)):
        padded = cell.copy()
        padded.align("right" if heading in RIGHT_ALIGNED else "left", width)
        if index:
            line.append(gap)
        line.append_text(padded)
    return line


class _Change(Protocol):
    """The shape of ``acknowledge_alert`` and ``resolve_alert``."""

    def __call__(self, session: Session, alert_id: uuid.UUID, *, by: str) -> AlertOut: ...


_PREFIX = TypeAdapter(AlertIdPrefix)


def _checked_prefix(raw: str) -> str:
    # Checked as the argument is parsed, before any database is reached.
    try:
        _PREFIX.validate_python(raw)
    except ValidationError:
        raise typer.BadParameter(
            f"{raw!r} is not an alert id nor the start of one; ids look like "
            "9b2f0c4e-6a1d-4e7b-8f3a-2c5d9e1b7a60, and any unique start of one will do"
        ) from None
    return raw


AlertId = Annotated[
    str,
    typer.Argument(
        parser=_checked_prefix,
        help="The alert's id or any unique start of it, e.g. the 8 characters `alerts` shows.",
    ),
]
By = Annotated[str, typer.Option("--by", help="Who does it (recorded on the alert).")]


@app.command("ack")
def ack(alert_id: AlertId, by: By) -> None:
    """Acknowledge an active alert: someone is on it."""
    _transition(alert_id, by, acknowledge_alert, "acknowledged")


@app.command("resolve")
def resolve(alert_id: AlertId, by: By) -> None:
    """Resolve an open alert."""
    _transition(alert_id, by, resolve_alert, "resolved")


def _transition(prefix: str, by: str, change: _Change, verb: str) -> None:
    with unit_of_work() as session:
        alert = change(session, _named(session, prefix).id, by=by)
    out.print(f"alert {alert.id} ({alert.service_name}/{alert.alert_type}) {verb} by {by}")


def _named(session: Session, prefix: str) -> AlertOut:
    """The one open alert whose id starts with ``prefix``; failing any, the one closed alert,
    whose transition then says why it cannot be made. Unknown or ambiguous: a usage error."""
    found = alerts_by_id_prefix(
        session, prefix, open_only=True, limit=CANDIDATES
    ) or alerts_by_id_prefix(session, prefix, limit=CANDIDATES)
    if not found:
        raise usage_error(
            f"no alert's id starts with {prefix!r}; list open alerts with `cim-monitoring alerts`"
        )
    if len(found) > 1:
        many = f"at least {len(found)}" if len(found) == CANDIDATES else str(len(found))
        named = ", ".join(f"{a.id} ({a.service_name}/{a.alert_type}, {a.status})" for a in found)
        raise usage_error(f"{many} alerts' ids start with {prefix!r}: {named}; give more of the id")
    return found[0]
