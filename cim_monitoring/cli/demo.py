"""``demo``: migrate, fill the database with realistic simulated probes, show the dashboard.

Each service is a small state machine probed once a minute: healthy most of the time, with
degraded spells (slow responses) and rarer outages (no response). A simple monitor rule raises
alerts during an incident and auto-resolves them when the service recovers, through the same
repository calls an application would make. Running the demo again tops the data up from each
service's newest check to now, so the dashboard stays current instead of doubling history.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer
from sqlalchemy.orm import Session

from cim_monitoring import (
    dashboard,
    database_now,
    latest_status,
    make_session_factory,
    raise_alert,
    record_checks,
    resolve_alerts,
)
from cim_monitoring.cli.console import out, progress
from cim_monitoring.cli.database import apply_migrations, database
from cim_monitoring.cli.durations import duration_option
from cim_monitoring.cli.status import render_dashboard

# The services CIM Summary depends on, with a typical healthy latency in milliseconds.
CATALOG = (
    ("postgres", 4, "sql"),
    ("file-storage", 45, "http"),
    ("document-ai", 650, "http"),
    ("llm-api", 1200, "http"),
    ("redis-cache", 2, "tcp"),
    ("auth", 30, "http"),
    ("search", 80, "http"),
    ("webhooks", 120, "http"),
)
# Per probe: a degraded spell starts about every 8 hours, an outage about every 40 hours;
# spells last about 15 minutes, outages about 6, and one spell in seven ends in an outage.
P_DEGRADE, P_OUTAGE = 1 / 480, 1 / 2400
P_SPELL_ENDS, P_SPELL_WORSENS, P_OUTAGE_ENDS = 1 / 15, 1 / 7, 1 / 6
DOWN_ALERT_AFTER, SLOW_ALERT_AFTER = 2, 5  # consecutive probes before the monitor raises
# A fresh fill ends with one service in a slow spell, so the dashboard shows an open alert.
SHOWCASE_SPELL = timedelta(minutes=12)
MONITOR = "demo-monitor"
ERRORS = ("connection refused", "timed out after 10 s", "HTTP 503 Service Unavailable")


@dataclass
class _Service:
    name: str
    base_ms: int
    probe: str
    start: datetime
    state: str = "healthy"
    run: int = 0

    def probes(self, now: datetime, every: timedelta) -> int:
        return max(0, math.ceil((now - self.start) / every))


@dataclass(frozen=True)
class _AlertCall:
    """One call the monitor makes: raise ``alert``, or resolve ``service``'s open alerts."""

    at: datetime
    service: str
    alert: dict[str, Any] | None = None


def demo(
    services: Annotated[
        int, typer.Option("--services", min=1, max=len(CATALOG) * 8, help="How many services.")
    ] = len(CATALOG),
    days: Annotated[int, typer.Option("--days", min=1, max=90, help="Days of history.")] = 3,
    every: Annotated[timedelta, duration_option("--every", "Probe interval.")] = timedelta(
        minutes=1
    ),
    seed: Annotated[int | None, typer.Option(help="Seed, for the same data every time.")] = None,
) -> None:
    """Migrate, fill with simulated probes (outages raise and auto-resolve alerts), show status."""
    with database() as engine:
        for line in apply_migrations(engine):
            out.print(line)
        factory = make_session_factory(engine)
        with factory.begin() as session:
            written, raised, resolved = _fill(session, services, timedelta(days=days), every, seed)
        with factory.begin() as session:
            board = dashboard(session)
    out.print(
        f"demo: recorded {written} checks for {services} services; the monitor raised "
        f"{raised} alerts and auto-resolved {resolved}"
    )
    render_dashboard(board)


def _fill(
    session: Session, count: int, history: timedelta, every: timedelta, seed: int | None
) -> tuple[int, int, int]:
    """Write the checks (one COPY) and then the monitor's alert calls; return the counts."""
    rng = random.Random(seed)  # noqa: S311 - a simulation, not cryptography
    now = database_now(session)
    services = _services(session, count, now - history, every)
    fresh = all(service.start == now - history for service in services)
    showcase = services[min(3, len(services) - 1)].name if fresh else None
    calls: list[_AlertCall] = []
    with progress() as bar:
        task = bar.add_task("simulating probes", total=sum(s.probes(now, every) for s in services))

        def ticking() -> Iterator[dict[str, Any]]:
            for check in _probes(services, now, every, rng, calls, showcase):
                bar.advance(task)
                yield check

        written = record_checks(session, ticking())
    raised = resolved = 0
    for call in calls:
        if call.alert is None:
            resolved += len(resolve_alerts(session, call.service, by=MONITOR, now=call.at))
        else:
            raised += raise_alert(session, call.alert, now=call.at).occurrence_count == 1
    return written, raised, resolved


def _services(session: Session, count: int, earliest: datetime, every: timedelta) -> list[_Service]:
    """The first ``count`` of the catalog, each resuming after its newest check, if any."""
    names = [_pick(index) for index in range(count)]
    latest = {row.service_name: row for row in latest_status(session, [n for n, _, _ in names])}
    services = []
    for name, base_ms, probe in names:
        last = latest.get(name)
        start = max(earliest, last.created_at + every) if last else earliest
        services.append(_Service(name, base_ms, probe, start, last.status if last else "healthy"))
    return services


def _pick(index: int) -> tuple[str, int, str]:
    name, base_ms, probe = CATALOG[index % len(CATALOG)]
    copy = index // len(CATALOG)
    return (f"{name}-{copy + 1}" if copy else name), base_ms, probe


def _probes(
    services: list[_Service],
    now: datetime,
    every: timedelta,
    rng: random.Random,
    calls: list[_AlertCall],
    showcase: str | None,
) -> Iterator[dict[str, Any]]:
    """Each service's checks from its start to now, interleaved; plans the alert calls."""
    for step in range(max(service.probes(now, every) for service in services)):
        for service in services:
            when = service.start + step * every
            if when >= now:
                continue
            previous = service.state
            forced = service.name == showcase and now - when <= SHOWCASE_SPELL
            service.state = "degraded" if forced else _next_state(previous, rng)
            service.run = service.run + 1 if service.state == previous else 1
            at = min(when + timedelta(seconds=rng.uniform(0, 3)), now)
            yield _check(service, at, rng)
            calls.extend(_monitor(service, previous, at))


def _next_state(state: str, rng: random.Random) -> str:
    roll = rng.random()
    if state == "healthy":
        return "down" if roll < P_OUTAGE else "degraded" if roll < P_OUTAGE + P_DEGRADE else state
    if state == "degraded":
        if roll >= P_SPELL_ENDS:
            return state
        return "down" if rng.random() < P_SPELL_WORSENS else "healthy"
    return "healthy" if roll < P_OUTAGE_ENDS else state


def _check(service: _Service, at: datetime, rng: random.Random) -> dict[str, Any]:
    details: dict[str, Any] = {"probe": service.probe, "region": "eu-west-1", "source": "demo"}
    if service.state == "down":
        latency, error = None, rng.choice(ERRORS)
    else:
        slowdown = rng.uniform(3, 8) if service.state == "degraded" else 1.0
        latency, error = round(service.base_ms * slowdown * rng.lognormvariate(0, 0.25)), None
    if service.probe == "http":
        details["http_status"] = 503 if service.state == "down" else 200
    return {
        "service_name": service.name,
        "status": service.state,
        "latency_ms": latency,
        "probe_details": details,
        "error_message": error,
        "created_at": at,
    }


def _monitor(service: _Service, previous: str, at: datetime) -> list[_AlertCall]:
    """The demo's alert rule: raise after a few bad probes in a row; resolve on recovery."""
    name, run = service.name, service.run
    if service.state == "healthy":
        return [_AlertCall(at, name)] if previous != "healthy" else []
    if service.state == "down" and run >= DOWN_ALERT_AFTER:
        kind, severity, message = "service_down", "critical", f"{name} is not answering"
    elif service.state == "degraded" and run == SLOW_ALERT_AFTER:
        kind, severity, message = "high_latency", "warning", f"{name} responds slower than usual"
    else:
        return []
    alert = {
        "service_name": name,
        "alert_type": kind,
        "severity": severity,
        "message": message,
        "details": {"consecutive_probes": run, "source": "demo"},
    }
    return [_AlertCall(at, name, alert)]
