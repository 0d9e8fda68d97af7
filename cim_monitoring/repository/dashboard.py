"""The dashboard: per service its newest check, its figures over a window, its open alerts,
and the worst status of each of the last 24 hours, in one typed result."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from cim_monitoring.repository.alerts import active_alerts
from cim_monitoring.repository.incidents import overlapping
from cim_monitoring.repository.queries import database_now, latest_status
from cim_monitoring.repository.rollups import HOUR, ROLLUPS, floor
from cim_monitoring.repository.stats import service_stats
from cim_monitoring.schemas import Dashboard, HourStatus, ServiceSummary
from cim_monitoring.schemas.params import DashboardParams
from cim_monitoring.vocabulary import HEALTH_STATUSES, SEVERITY_RANK

TIMELINE_HOURS = 24
# The window of a moment: the incidents that overlap [now, now + 1 us) are those in progress
# at now (begun at or before it, not ended by it).
_INSTANT = timedelta(microseconds=1)
_HOURLY = ROLLUPS[HOUR]


def dashboard(
    session: Session, *, window: timedelta = timedelta(hours=24), now: datetime | None = None
) -> Dashboard:
    """Every service with checks or open alerts, by name: its newest check and that check's
    age, checks, uptime and p95 over ``[now - window, now)``, its open alerts and their worst
    severity, its timeline: the worst status of each of the 24 UTC hours up to the one
    holding ``now``, oldest first, read from the hourly rollups (exact), and the start of its
    incident in progress at ``now``, if any. ``now`` defaults to the transaction's start
    time."""
    params = DashboardParams(window=window, now=now)
    now = params.now or database_now(session)
    latest = {row.service_name: row for row in latest_status(session)}
    stats = {
        row.service_name: row for row in service_stats(session, start=now - params.window, end=now)
    }
    alerts: dict[str, list[str]] = defaultdict(list)
    for alert in active_alerts(session):
        alerts[alert.service_name].append(alert.severity)
    timelines = _timelines(session, now)
    since = {
        run.service_name: run.started_at
        for run in overlapping(session, now, now + _INSTANT, None).runs
    }
    services = []
    for name in sorted(latest.keys() | stats.keys() | alerts.keys()):
        last, figures, severities = latest.get(name), stats.get(name), alerts.get(name, [])
        services.append(
            ServiceSummary(
                service_name=name,
                status=last.status if last else None,
                last_check_at=last.created_at if last else None,
                age=now - last.created_at if last else None,
                latency_ms=last.latency_ms if last else None,
                checks=figures.total if figures else 0,
                uptime=figures.uptime if figures else None,
                p95_ms=figures.p95_ms if figures else None,
                open_alerts=len(severities),
                worst_open_severity=max(severities, key=SEVERITY_RANK.__getitem__, default=None),
                timeline=timelines.get(name) or _timeline(now, {}),
                incident_since=since.get(name),
            )
        )
    return Dashboard(generated_at=now, window=params.window, services=tuple(services))


def _timelines(session: Session, now: datetime) -> dict[str, tuple[HourStatus, ...]]:
    """Each service's timeline, for the services with a check in it."""
    last = floor(now, HOUR)
    first = last - (TIMELINE_HOURS - 1) * HOUR
    rows = session.execute(
        select(
            _HOURLY.c.service_name, _HOURLY.c.hour, *(_HOURLY.c[s] for s in HEALTH_STATUSES)
        ).where(_HOURLY.c.hour >= first, _HOURLY.c.hour <= last)
    )
    worst: dict[str, dict[datetime, str]] = defaultdict(dict)
    for row in rows:
        # The statuses run from best to worst: the last one counted in the hour is its worst.
        seen = [status for status in HEALTH_STATUSES if getattr(row, status)]
        worst[row.service_name][row.hour] = seen[-1]
    return {name: _timeline(now, hours) for name, hours in worst.items()}


def _timeline(now: datetime, worst: dict[datetime, str]) -> tuple[HourStatus, ...]:
    last = floor(now, HOUR)
    starts = (last - back * HOUR for back in range(TIMELINE_HOURS - 1, -1, -1))
    return tuple(HourStatus(start=start, status=worst.get(start)) for start in starts)
