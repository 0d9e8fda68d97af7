"""What an operator sees in an 80-column terminal: ``alerts`` with the identifying columns
whole and the message cut at the end, ``alerts ack|resolve`` by id prefix, ``status`` with a
24-cell strip per service and the age of an open incident, ``incidents`` one row each; colour
only on a terminal, none under NO_COLOR. Real processes on a
real database; the data is written in-process with the library."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from command import cli, migrated_env, ok, one_error_line
from rich.cells import cell_len
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from cim_monitoring import (
    acknowledge_alert,
    active_alerts,
    alerts_by_id_prefix,
    database_now,
    make_engine,
    make_session_factory,
    raise_alert,
    record_checks,
    resolve_alert,
)

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)
WIDTH = 80
ESCAPE = "\x1b["
CELLS = {"healthy": "█", "degraded": "▅", "down": "▁", None: "·"}
STRIP = re.compile(f"[{''.join(CELLS.values())}]+")
WORST_LAST = ("healthy", "degraded", "down")
LONG_MESSAGE = (
    "The TLS certificate of storage.eu-west-2.example.com expires in 3 days; renew it with "
    "the ACME client before Friday, or every upload will fail its handshake"
)


@pytest.fixture
def env(tmp_path: Path, empty_database_url: URL) -> dict[str, str]:
    return migrated_env(tmp_path, empty_database_url) | {"COLUMNS": str(WIDTH)}


@pytest.fixture
def session(env: dict[str, str]) -> Iterator[Session]:
    """A session on the command's database; the test commits what the command is to see."""
    engine = make_engine(env["DATABASE_URL"], poolclass=NullPool)
    with make_session_factory(engine)() as session:
        yield session
    engine.dispose()


def on_terminal(env: dict[str, str], *args: str) -> str:
    """Standard output of ``cim-monitoring <args>`` run on a pseudo-terminal."""
    primary, secondary = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "cim_monitoring.cli", *args],
        env={k: v for k, v in env.items() if k != "FORCE_COLOR"} | {"TERM": "xterm-256color"},
        cwd=env["CWD"],
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=subprocess.DEVNULL,
    ) as process:
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the command has exited and closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=90) == 0
    os.close(primary)
    return b"".join(chunks).decode()


def seed_alerts(session: Session) -> dict[str, Any]:
    """An acknowledged critical alert of a long-named service with a long message, an active
    warning, and an info alert whose message has line breaks."""
    long = raise_alert(
        session,
        {
            "service_name": "file-storage-eu",
            "alert_type": "certificate_expiring",
            "severity": "critical",
            "message": LONG_MESSAGE,
        },
    )
    acknowledge_alert(session, long.id, by="alice")
    for service, alert_type, severity, message in (
        ("llm-api", "high_latency", "warning", "llm-api responds slower than usual"),
        ("search", "index_lag", "info", "index 40 s behind\nreindex queued"),
    ):
        raise_alert(
            session,
            {
                "service_name": service,
                "alert_type": alert_type,
                "severity": severity,
                "message": message,
            },
        )
    return {alert.service_name: alert for alert in active_alerts(session)}


def test_alerts_keep_identifying_columns_whole_at_80_columns(
    env: dict[str, str], session: Session
) -> None:
    alerts = seed_alerts(session)
    session.commit()
    lines = ok(cli(env, "alerts")).stdout.splitlines()
    assert ESCAPE not in "".join(lines), "no colour in a pipe"
    assert lines[1].split() == ["Id", "Severity", "Service", "Type", "Status", "Count", "Age"]
    for alert in alerts.values():
        [index] = [i for i, line in enumerate(lines) if line.startswith(str(alert.id)[:8] + " ")]
        columns, message = lines[index], lines[index + 1]
        assert "…" not in columns
        assert cell_len(columns) <= WIDTH
        assert columns.split()[:6] == [
            str(alert.id)[:8],
            alert.severity,
            alert.service_name,
            alert.alert_type,
            alert.status,
            "1",
        ]
        assert cell_len(message) <= WIDTH
        assert message.startswith(" " * 8)
        flattened = " ".join(alert.message.split())
        if alert.message == LONG_MESSAGE:
            assert message.endswith("…")
            assert flattened.startswith(message.strip().removesuffix("…"))
            assert len(message.strip()) > 40
        else:
            assert message.strip() == flattened


def test_ack_and_resolve_take_a_unique_id_prefix(env: dict[str, str], session: Session) -> None:
    alerts = seed_alerts(session)
    # Ids of our choosing: two open alerts that share a prefix, an open and a resolved one that
    # share another, and a resolved one alone.
    for alert_id, alert_type in (
        ("abcd0000-0000-4000-8000-000000000001", "twin_a"),
        ("abcd0000-0000-4000-8000-000000000002", "twin_b"),
        ("bcde0000-0000-4000-8000-000000000001", "gone"),
        ("bcde0000-0000-4000-8000-000000000002", "still_here"),
        ("cdef0000-0000-4000-8000-000000000001", "closed"),
    ):
        session.execute(
            text(
                "INSERT INTO alert_events (id, service_name, alert_type, severity, message) "
                "VALUES (:id, 'queue', :type, 'info', 'm')"
            ),
            {"id": alert_id, "type": alert_type},
        )
    for closed in ("bcde0000-0000-4000-8000-000000000001", "cdef0000-0000-4000-8000-000000000001"):
        resolve_alert(session, closed, by="ops")
    session.commit()

    llm = alerts["llm-api"]
    acked = ok(cli(env, "alerts", "ack", str(llm.id)[:8], "--by", "bob")).stdout
    assert f"alert {llm.id} (llm-api/high_latency) acknowledged by bob" in acked

    ambiguous = cli(env, "alerts", "resolve", "abcd", "--by", "bob")
    one_error_line(
        ambiguous,
        2,
        "2 alerts' ids start with 'abcd'",
        "abcd0000-0000-4000-8000-000000000001 (queue/twin_a, active)",
        "abcd0000-0000-4000-8000-000000000002 (queue/twin_b, active)",
    )
    # The open alert wins over a resolved one with the same prefix.
    resolved = ok(cli(env, "alerts", "resolve", "bcde0000", "--by", "bob")).stdout
    assert "bcde0000-0000-4000-8000-000000000002 (queue/still_here) resolved by bob" in resolved
    # Only closed alerts start so: the transition says why it cannot be made.
    one_error_line(cli(env, "alerts", "ack", "cdef", "--by", "bob"), 1, "is resolved")
    one_error_line(cli(env, "alerts", "ack", "ffff", "--by", "bob"), 2, "'ffff'")

    session.rollback()  # a fresh snapshot of what the commands committed
    [twin_a, twin_b] = alerts_by_id_prefix(session, "abcd")
    assert (twin_a.status, twin_b.status) == ("active", "active"), "ambiguous: nothing changed"
    [llm_now] = alerts_by_id_prefix(session, str(llm.id))
    assert (llm_now.status, llm_now.acknowledged_by) == ("acknowledged", "bob")


def worst(statuses: list[str]) -> str | None:
    return max(statuses, key=WORST_LAST.index, default=None)


def expected_strip(checks: list[tuple[datetime, str]], last_hour: datetime) -> list[str | None]:
    hours = [last_hour - back * HOUR for back in range(23, -1, -1)]
    return [worst([s for at, s in checks if start <= at < start + HOUR]) for start in hours]


def test_status_draws_24_hourly_cells_per_service(env: dict[str, str], session: Session) -> None:
    now = database_now(session)
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    api = [
        (this_hour - 24 * HOUR, "down"),  # the hour before the strip
        (this_hour - 23 * HOUR + timedelta(minutes=5), "degraded"),
        (this_hour - 23 * HOUR + timedelta(minutes=50), "healthy"),
        (this_hour - 9 * HOUR, "healthy"),
        (this_hour - 9 * HOUR + timedelta(minutes=1), "down"),
        (this_hour - 9 * HOUR + timedelta(minutes=2), "degraded"),
        (this_hour - 2 * HOUR, "degraded"),
        (now - timedelta(seconds=1), "healthy"),
    ]
    silent = [(now - 30 * HOUR, "down")]  # known, but nothing in the last 24 hours
    record_checks(
        session,
        (
            {"service_name": name, "status": status, "latency_ms": 20, "created_at": at}
            for name, checks in (("api", api), ("file-storage", silent))
            for at, status in checks
        ),
    )
    session.commit()

    report = json.loads(ok(cli(env, "status", "--json")).stdout)
    generated = datetime.fromisoformat(report["generated_at"])
    last_hour = generated.replace(minute=0, second=0, microsecond=0)
    timelines = {s["service_name"]: s["timeline"] for s in report["services"]}
    for name, checks in (("api", api), ("file-storage", silent)):
        timeline = timelines[name]
        assert [datetime.fromisoformat(h["start"]) for h in timeline] == [
            last_hour - back * HOUR for back in range(23, -1, -1)
        ]
        assert [h["status"] for h in timeline] == expected_strip(checks, last_hour)

    output = ok(cli(env, "status")).stdout
    assert ESCAPE not in output, "no colour in a pipe"
    assert "…" not in output
    assert all(cell_len(line) <= WIDTH for line in output.splitlines())
    rows = {line.split()[0]: line for line in output.splitlines() if STRIP.search(line)}
    # This run may have begun in the next hour: its strip is the same data, one cell on.
    for name, checks in (("api", api), ("file-storage", silent)):
        [strip] = STRIP.findall(rows[name])
        assert len(strip) == 24
        assert strip in {
            "".join(CELLS[s] for s in expected_strip(checks, hour))
            for hour in (this_hour, this_hour + HOUR)
        }
    assert rows["api"].split()[1] == "healthy"
    assert rows["file-storage"].split()[1] == "down"


def test_colour_only_on_a_terminal_and_never_under_no_color(
    env: dict[str, str], session: Session
) -> None:
    seed_alerts(session)
    record_checks(session, [{"service_name": "api", "status": "degraded"}])
    session.commit()
    assert ESCAPE in on_terminal(env, "status")
    status = on_terminal(env | {"NO_COLOR": "1"}, "status")
    assert ESCAPE not in status
    assert CELLS["degraded"] in status, "without colour the strip still reads, by its shapes"
    assert ESCAPE in on_terminal(env, "alerts")
    alerts = on_terminal(env | {"NO_COLOR": "1"}, "alerts")
    assert ESCAPE not in alerts
    assert "llm-api responds slower than usual" in alerts


def seed_incidents(session: Session) -> datetime:
    """An incident that ended a day ago after lasting a day, one ongoing for eleven hours, one
    older than a week, and a service that was always healthy; returns the seeding time."""
    now = database_now(session)
    checks = {
        "api": [
            (now - 3 * DAY, "healthy"),
            (now - 2 * DAY, "down"),
            (now - 2 * DAY + 30 * MINUTE, "degraded"),
            (now - DAY, "healthy"),
        ],
        # Eleven hours: an age of three characters, the widest status beside the widest name.
        "storage-eu-2": [(now - 13 * HOUR, "healthy"), (now - 11 * HOUR, "degraded")],
        "old": [(now - 10 * DAY, "down"), (now - 9 * DAY, "healthy")],
        # Always healthy (uptime 100%), last checked 12 minutes ago: an age of three characters.
        "db": [(now - HOUR, "healthy"), (now - 12 * MINUTE, "healthy")],
    }
    record_checks(
        session,
        (
            # Latencies as wide as they come (641ms), so the status view's figures take all
            # the room they can beside the service names.
            {
                "service_name": name,
                "status": status,
                "created_at": at,
                "latency_ms": None if status == "down" else 641,
            }
            for name, history in checks.items()
            for at, status in history
        ),
    )
    session.commit()
    return now


def test_incidents_list_a_row_each_at_80_columns(env: dict[str, str], session: Session) -> None:
    seeded = seed_incidents(session)
    report = json.loads(ok(cli(env, "incidents", "--json")).stdout)
    assert [(i["service_name"], i["worst_status"], i["ended_at"]) for i in report] == [
        ("api", "down", (seeded - DAY).isoformat().replace("+00:00", "Z")),
        ("storage-eu-2", "degraded", None),
    ]
    assert report[0]["duration"] == DAY.total_seconds()
    assert report[1]["duration"] >= 11 * HOUR.total_seconds()

    lines = ok(cli(env, "incidents")).stdout.splitlines()
    assert ESCAPE not in "".join(lines), "no colour in a pipe"
    assert "…" not in "".join(lines)
    assert all(cell_len(line) <= WIDTH for line in lines)
    assert "7d" in lines[0]
    assert "UTC" in lines[0]
    assert lines[1].split() == ["Service", "Worst", "Started", "Ended", "Lasted"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"api", "storage-eu-2"}
    started = (seeded - 2 * DAY).strftime("%Y-%m-%d %H:%M").split()
    ended = (seeded - DAY).strftime("%Y-%m-%d %H:%M").split()
    assert rows["api"] == ["api", "down", *started, *ended, "1d"]
    assert rows["storage-eu-2"][1] == "degraded"
    assert rows["storage-eu-2"][4:] == ["ongoing", "11h"]

    # The api incident ended a day before this run: not in a one-day window.
    last_day = ok(cli(env, "incidents", "--window", "1d")).stdout
    assert "storage-eu-2" in last_day
    assert "api" not in last_day
    assert "storage" not in ok(cli(env, "incidents", "--service", "api")).stdout
    named = json.loads(ok(cli(env, "incidents", "--service", "db", "--json")).stdout)
    assert named == []
    assert "No incidents in the last 7d." in ok(cli(env, "incidents", "--service", "db")).stdout
    one_error_line(cli(env, "incidents", "--window", "soon"), 2, "'soon' is not a duration")


def test_status_shows_how_long_a_service_has_not_been_healthy(
    env: dict[str, str], session: Session
) -> None:
    seed_incidents(session)
    output = ok(cli(env, "status")).stdout
    assert all(cell_len(line) <= WIDTH for line in output.splitlines())
    assert "…" not in output
    rows = {line.split()[0]: line.split() for line in output.splitlines() if STRIP.search(line)}
    # A twelve-character name stays whole beside an incident's age and five-character figures.
    assert rows["storage-eu-2"][1:3] == ["degraded", "11h"]
    assert rows["storage-eu-2"][-2] == "641ms"  # its p95
    assert rows["api"][1] == "healthy"
    assert STRIP.fullmatch(rows["api"][2])
    board = json.loads(ok(cli(env, "status", "--json")).stdout)
    since = {s["service_name"]: s["incident_since"] for s in board["services"]}
    assert since["api"] is None
    assert since["db"] is None
    assert since["storage-eu-2"] is not None


def test_incidents_colour_only_on_a_terminal(env: dict[str, str], session: Session) -> None:
    seed_incidents(session)
    assert ESCAPE in on_terminal(env, "incidents")
    plain = on_terminal(env | {"NO_COLOR": "1"}, "incidents")
    assert ESCAPE not in plain
    assert "ongoing" in plain
