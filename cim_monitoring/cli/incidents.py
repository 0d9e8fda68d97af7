"""``incidents``: the runs of non-healthy checks over a window, one row each."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated

import typer
from rich.text import Text

from cim_monitoring import Incident, database_now
from cim_monitoring import incidents as overlapping
from cim_monitoring.cli.console import STATUS_STYLES, AsJson, out, service_table
from cim_monitoring.cli.database import unit_of_work
from cim_monitoring.cli.durations import duration_label, duration_option, format_age

# Minutes are what an operator matches against a pager or a log; the title says UTC.
MOMENT = "%Y-%m-%d %H:%M"
ONGOING = "ongoing"

Window = Annotated[
    timedelta, duration_option("--window", "Incidents overlapping this much history.")
]
Services = Annotated[
    list[str] | None,
    typer.Option("--service", help="Only this service's incidents (repeat for more)."),
]


def incidents(
    window: Window = timedelta(days=7), service: Services = None, as_json: AsJson = False
) -> None:
    """Incidents (runs of degraded or down checks, up to the next healthy one) overlapping the
    window, by service and start: the worst status, when it started and ended, how long it
    lasted (an ongoing one: so far)."""
    with unit_of_work() as session:
        now = database_now(session)
        found = overlapping(session, start=now - window, end=now, services=service or None)
    if as_json:
        typer.echo(json.dumps([incident.model_dump(mode="json") for incident in found], indent=2))
    elif found:
        render_incidents(found, window)
    else:
        out.print(f"No incidents in the last {duration_label(window)}.")


def render_incidents(found: Sequence[Incident], window: timedelta) -> None:
    table = service_table(f"Incidents over the last {duration_label(window)} (times in UTC)", gap=2)
    table.add_column("Worst", no_wrap=True)
    table.add_column("Started", no_wrap=True)
    table.add_column("Ended", no_wrap=True)
    table.add_column("Lasted", justify="right", no_wrap=True)
    for incident in found:
        style = STATUS_STYLES[incident.worst_status]
        table.add_row(
            incident.service_name,
            Text(incident.worst_status, style=style),
            _moment(incident.started_at),
            Text(ONGOING, style=style) if incident.ended_at is None else _moment(incident.ended_at),
            format_age(incident.duration),
        )
    out.print(table)


def _moment(moment: datetime) -> str:
    return moment.strftime(MOMENT)
