"""``status``: the dashboard, one row per service with a strip of its last 24 hours."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import typer
from rich.text import Text

from cim_monitoring import Dashboard, HourStatus, ServiceSummary, dashboard
from cim_monitoring.cli.console import (
    SEVERITY_STYLES,
    STATUS_STYLES,
    AsJson,
    out,
    service_table,
)
from cim_monitoring.cli.database import unit_of_work
from cim_monitoring.cli.durations import duration_label, duration_option, format_age

# One cell per hour, shaped as well as coloured: without colour (NO_COLOR, a pipe) the strip
# still reads, a full bar for a healthy hour down to a floor for an hour with an outage.
CELLS = {"healthy": "█", "degraded": "▅", "down": "▁", None: "·"}
STRIP_HEADING = f"{'24h ago':<21}now"

Window = Annotated[timedelta, duration_option("--window", "Uptime and p95 over this much history.")]


def status(window: Window = timedelta(hours=24), as_json: AsJson = False) -> None:
    """The dashboard: per service its status (and for how long it has not been healthy), the
    last 24 hours hour by hour, the age and latency of its last check, uptime and p95 over the
    window, open alerts."""
    with unit_of_work() as session:
        board = dashboard(session, window=window)
    if as_json:
        typer.echo(board.model_dump_json(indent=2))
    else:
        render_dashboard(board)


def render_dashboard(board: Dashboard) -> None:
    if not board.services:
        out.print("No health checks recorded yet: try `cim-monitoring record` or `demo`.")
        return
    window = duration_label(board.window)
    # One space between columns: the strip and the figures fit 80 columns.
    table = service_table(f"Service health (uptime and p95 over the last {window})", gap=1)
    table.add_column("Status", no_wrap=True)
    table.add_column(STRIP_HEADING, no_wrap=True, min_width=len(STRIP_HEADING))
    # "Last": the newest check's latency; a header no wider than its figures leaves the
    # service names room for twelve characters beside an incident's age at 80 columns.
    for heading in ("Age", "Last", "Uptime", "p95", "Alerts"):
        table.add_column(heading, justify="right", no_wrap=True)
    for service in board.services:
        table.add_row(*_row(service, board.generated_at))
    out.print(table)
    legend = Text("one cell per hour, its worst status:")
    for state, cell in CELLS.items():
        legend.append(" ").append(cell, style=STATUS_STYLES[state]).append(
            f" {state or 'no checks'}"
        )
    out.print(legend)


def _row(service: ServiceSummary, now: datetime) -> tuple[Text | str, ...]:
    return (
        service.service_name,
        _status(service, now),
        strip(service.timeline),
        "—" if service.age is None else format_age(service.age),
        _latency(service.latency_ms),
        _uptime(service.uptime),
        _latency(service.p95_ms),
        Text(str(service.open_alerts), style=SEVERITY_STYLES[service.worst_open_severity]),
    )


def _uptime(uptime: float | None) -> str:
    """``97.43%``; ``100%`` rather than ``100.00%``, which would take the column to seven
    characters and wrap a twelve-character name beside an incident's age at 80 columns."""
    if uptime is None:
        return "—"
    shown = f"{uptime:.2%}"
    return "100%" if shown == "100.00%" else shown


def _status(service: ServiceSummary, now: datetime) -> Text:
    """``healthy``, or ``down 3h``: the status and the age of the incident it is part of."""
    label = service.status or "no checks"
    if service.incident_since is not None:
        label = f"{label} {format_age(now - service.incident_since)}"
    return Text(label, style=STATUS_STYLES[service.status])


def strip(timeline: tuple[HourStatus, ...]) -> Text:
    """One cell per hour, oldest first, shaped and coloured by the hour's worst status."""
    cells = Text()
    for hour in timeline:
        cells.append(CELLS[hour.status], style=STATUS_STYLES[hour.status])
    return cells


def _latency(ms: int | None) -> str:
    """At most five characters: ``4ms``, ``641ms``, ``7.0s``, ``12s``."""
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms}ms"
    return f"{ms / 1000:.1f}s" if ms < 10_000 else f"{ms // 1000}s"
