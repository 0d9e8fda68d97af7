"""dashboard: per service its newest check, figures over the window, open alerts and a timeline
of the last 24 hours read from the hourly rollups; both faces."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cases import refused
from faces import Face

HOUR = timedelta(hours=1)
# Half past: the timeline's last hour is the one holding NOW, begun at CURRENT.
NOW = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)
CURRENT = datetime(2024, 3, 1, 12, tzinfo=UTC)


def check(service: str, status: str, at: datetime, latency_ms: int | None = None) -> dict[str, Any]:
    return {"service_name": service, "status": status, "latency_ms": latency_ms, "created_at": at}


def hours_back(count: int, minutes: int = 10) -> datetime:
    return CURRENT - count * HOUR + timedelta(minutes=minutes)


def alert(service: str, alert_type: str, severity: str) -> dict[str, Any]:
    return {"service_name": service, "alert_type": alert_type, "severity": severity, "message": "m"}


def test_timeline_is_the_worst_status_of_each_of_the_last_24_hours_oldest_first(
    face: Face,
) -> None:
    face.record_checks(
        [
            check("api", "down", hours_back(24)),  # the hour before the timeline
            check("api", "degraded", hours_back(23)),
            check("api", "healthy", hours_back(23, minutes=40)),
            check("api", "healthy", hours_back(10)),
            check("api", "down", hours_back(10, minutes=20)),
            check("api", "degraded", hours_back(10, minutes=30)),
            check("api", "healthy", hours_back(0)),
        ]
    )
    [api] = face.dashboard(now=NOW).services
    assert [hour.start for hour in api.timeline] == [CURRENT - n * HOUR for n in range(23, -1, -1)]
    expected: list[str | None] = [None] * 24
    expected[0], expected[13], expected[23] = "degraded", "down", "healthy"
    assert [hour.status for hour in api.timeline] == expected


def test_figures_alerts_and_services_known_only_by_their_alerts(face: Face) -> None:
    face.record_checks(
        [
            check("api", "healthy", NOW - 30 * HOUR, 5),  # before the window
            check("api", "healthy", NOW - 3 * HOUR, 100),
            check("api", "down", NOW - 2 * HOUR),
            check("api", "degraded", NOW - timedelta(minutes=5), 300),
            check("db", "healthy", NOW - HOUR, 4),
        ]
    )
    face.raise_alert(alert("api", "high_latency", "warning"), now=NOW)
    critical = face.raise_alert(alert("api", "service_down", "critical"), now=NOW)
    face.acknowledge_alert(critical.id, by="ops", now=NOW)
    closed = face.raise_alert(alert("db", "service_down", "critical"), now=NOW)
    face.resolve_alert(closed.id, by="ops", now=NOW)
    face.raise_alert(alert("queue", "backlog", "info"), now=NOW)

    board = face.dashboard(now=NOW)
    assert board.generated_at == NOW
    assert board.window == 24 * HOUR
    api, db, queue = board.services
    [stats] = face.service_stats(start=NOW - 24 * HOUR, end=NOW, services=["api"])
    assert api.model_dump(exclude={"timeline"}) == {
        "service_name": "api",
        "status": "degraded",
        "last_check_at": NOW - timedelta(minutes=5),
        "age": timedelta(minutes=5),
        "latency_ms": 300,
        "checks": 3,
        "uptime": 1 / 3,
        "p95_ms": stats.p95_ms,
        "open_alerts": 2,
        "worst_open_severity": "critical",
        "incident_since": NOW - 2 * HOUR,
    }
    assert stats.p95_ms is not None
    assert (db.service_name, db.open_alerts, db.worst_open_severity) == ("db", 0, None)
    assert queue.model_dump(exclude={"timeline"}) == {
        "service_name": "queue",
        "status": None,
        "last_check_at": None,
        "age": None,
        "latency_ms": None,
        "checks": 0,
        "uptime": None,
        "p95_ms": None,
        "open_alerts": 1,
        "worst_open_severity": "info",
        "incident_since": None,
    }
    assert [hour.status for hour in queue.timeline] == [None] * 24
    assert len(queue.timeline) == 24

    [api_2h, _, _] = face.dashboard(now=NOW, window=2 * HOUR).services
    assert (api_2h.checks, api_2h.uptime) == (2, 0.0)


def test_now_defaults_to_the_transactions_clock_and_json_durations_are_seconds(
    face: Face,
) -> None:
    face.record_check(check("api", "healthy", NOW))
    board = face.dashboard(window=6 * HOUR)
    assert board.generated_at == face.database_now()
    document = json.loads(board.model_dump_json())
    assert document["window"] == 6 * 3600
    [api] = document["services"]
    assert api["age"] == (board.generated_at - NOW).total_seconds()
    assert len(api["timeline"]) == 24
    assert api["timeline"][-1]["start"].endswith("Z")


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"window": timedelta(0)}, "window"),
        ({"window": 3600}, "window"),
        ({"window": timedelta(days=5000)}, "window"),
        ({"now": datetime(2024, 3, 1)}, "now"),  # naive
    ],
    ids=["zero-window", "int-window", "window-too-long", "naive-now"],
)
def test_bad_arguments_are_refused_naming_them(
    face: Face, arguments: dict[str, Any], field: str
) -> None:
    assert refused(lambda: face.dashboard(**arguments)) == [(field,)]
