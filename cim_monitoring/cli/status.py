"""``status``: the dashboard, one row per service."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text
from sqlalchemy.orm import Session

from cim_monitoring.cli.console import SEVERITY_STYLES, STATUS_STYLES, AsJson, out
from cim_monitoring.cli.database import database_now, unit_of_work
from cim_monitoring.cli.durations import duration_label, format_duration, parse_duration
from cim_monitoring.repository import active_alerts, latest_status, service_stats

_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}

Window = Annotated[
    timedelta,
    typer.Option("--window", parser=parse_duration, help="Uptime and p95 over this much history."),
]


def status(window: Window = timedelta(hours=24), as_json: AsJson = False) -> None:
    """The dashboard: per service its status, last check, latency, uptime, p95, open alerts."""
    with unit_of_work() as session:
        report = status_report(session, window)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        render_status(report)


def status_report(session: Session, window: timedelta) -> dict[str, Any]:
    """Everything the dashboard shows, as plain JSON-ready data."""
    now = database_now(session.connection())
    latest = {row.service_name: row for row in latest_status(session)}
    stats = {row.service_name: row for row in service_stats(session, start=now - window, end=now)}
    alerts = active_alerts(session)
    open_counts = Counter(alert.service_name for alert in alerts)
    worst: dict[str, str] = {}
    for alert in alerts:
        current = worst.get(alert.service_name, "info")
        if _SEVERITY_RANK[alert.severity] >= _SEVERITY_RANK[current]:
            worst[alert.service_name] = alert.severity
    services = []
    for name in sorted(latest.keys() | stats.keys() | open_counts.keys()):
        last, figures = latest.get(name), stats.get(name)
        services.append(
            {
                "service_name": name,
                "status": last.status if last else None,
                "last_check_at": last.created_at.isoformat() if last else None,
                "age_seconds": round((now - last.created_at).total_seconds()) if last else None,
                "latency_ms": last.latency_ms if last else None,
                "checks": figures.total if figures else 0,
                "uptime": figures.uptime if figures else None,
                "p95_ms": figures.p95_ms if figures else None,
                "open_alerts": open_counts[name],
                "worst_open_severity": worst.get(name),
            }
        )
    return {
        "generated_at": now.isoformat(),
        "window": duration_label(window),
        "window_seconds": int(window.total_seconds()),
        "services": services,
    }


def render_status(report: dict[str, Any]) -> None:
    window = report["window"]
    table = Table(title=f"Service health (uptime and p95 over the last {window})")
    table.add_column("Service", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    for heading in ("Last check", "Latency", "Uptime", "p95", "Alerts"):
        table.add_column(heading, justify="right", no_wrap=True)
    for row in report["services"]:
        state = row["status"] or "no checks"
        age = row["age_seconds"]
        alerts = row["open_alerts"]
        table.add_row(
            row["service_name"],
            Text(state, style=STATUS_STYLES.get(state, "dim")),
            "—" if age is None else f"{format_duration(timedelta(seconds=age))} ago",
            _ms(row["latency_ms"]),
            "—" if row["uptime"] is None else f"{row['uptime']:.2%}",
            _ms(row["p95_ms"]),
            Text(str(alerts), style=SEVERITY_STYLES.get(row["worst_open_severity"], "")),
        )
    if not report["services"]:
        out.print("No health checks recorded yet: try `cim-monitoring record` or `demo`.")
        return
    out.print(table)


def _ms(value: int | None) -> str:
    return "—" if value is None else f"{value} ms"
