"""``status`` (the dashboard) and ``alerts`` (list, acknowledge, resolve)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import timedelta
from typing import Annotated, Any, Protocol

import typer
from rich.table import Table
from rich.text import Text
from sqlalchemy.orm import Session

from cim_monitoring.cli_common import (
    EXIT_USAGE,
    AsJson,
    CliError,
    database_now,
    duration_label,
    format_duration,
    out,
    parse_duration,
    unit_of_work,
    usage_error,
)
from cim_monitoring.errors import AlertNotFound
from cim_monitoring.repository import (
    acknowledge_alert,
    active_alerts,
    latest_status,
    resolve_alert,
    service_stats,
)
from cim_monitoring.schemas import AlertOut

STATUS_STYLES = {"healthy": "green", "degraded": "yellow", "down": "bold red"}
SEVERITY_STYLES = {"info": "cyan", "warning": "yellow", "critical": "bold red"}
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


alerts_app = typer.Typer(
    help="Open alerts: list them, or acknowledge or resolve one by id.",
    invoke_without_command=True,
)


@alerts_app.callback()
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


@alerts_app.command("ack")
def ack(alert_id: AlertId, by: By) -> None:
    """Acknowledge an active alert: someone is on it."""
    _transition(alert_id, by, acknowledge_alert, "acknowledged")


@alerts_app.command("resolve")
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


def _ms(value: int | None) -> str:
    return "—" if value is None else f"{value} ms"
