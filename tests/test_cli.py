"""The ``cim-monitoring`` command through its real entry point, against real PostgreSQL.

Every call is a fresh ``python -m cim_monitoring.cli`` process: embedded mode (no
``DATABASE_URL``, a data directory of the test's own) and URL mode (a fresh database on the
session's server). No mocks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import psycopg
import pytest
from command import cli, command_env, migrated_env, ok, one_error_line
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from cim_monitoring import make_engine, migrations
from cim_monitoring.cli.embedded import EmbeddedServer

# Every revision, oldest first: what `migrate` applies to an empty database.
HISTORY = migrations.history()
USING = "cim-monitoring: using"


@pytest.fixture
def embedded(tmp_path: Path, embedded_data_dir: Path) -> Iterator[dict[str, str]]:
    """Embedded mode in a fresh data directory; the server is stopped afterwards regardless."""
    env = command_env(tmp_path) | {"CIM_MONITORING_DATA_DIR": str(embedded_data_dir / "data")}
    yield env
    EmbeddedServer(embedded_data_dir / "data").stop()  # in-process: quicker than `db stop`


@pytest.fixture
def url_mode(tmp_path: Path, empty_database_url: URL) -> dict[str, str]:
    return command_env(tmp_path, empty_database_url)


@pytest.fixture
def migrated(tmp_path: Path, empty_database_url: URL) -> dict[str, str]:
    """URL mode on a database already at head."""
    return migrated_env(tmp_path, empty_database_url)


def postmaster_running(data_dir: Path) -> bool:
    pidfile = data_dir / "pgdata" / "postmaster.pid"
    if not pidfile.exists():
        return False
    pid = int(pidfile.read_text().split()[0])
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until_writing(url: URL, timeout: float = 60) -> None:
    """Return once another session on ``url`` holds a transaction that has written a row."""
    deadline = time.monotonic() + timeout
    # A transaction gets an xid (backend_xid) at its first write, and not before.
    writers = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND backend_xid IS NOT NULL"
    )
    with psycopg.connect(url.render_as_string(), autocommit=True) as connection:
        while connection.execute(writers).fetchone() == (0,):
            assert time.monotonic() < deadline, "the run never started writing"
            time.sleep(0.05)


def sql(env: dict[str, str], statement: str) -> None:
    engine = make_engine(env["DATABASE_URL"], poolclass=NullPool)
    with engine.begin() as connection:
        connection.execute(text(statement))
    engine.dispose()


# --- embedded mode -----------------------------------------------------------------------


def test_embedded_demo_data_persists_across_invocations(embedded: dict[str, str]) -> None:
    data_dir = Path(embedded["CIM_MONITORING_DATA_DIR"])
    first = ok(cli(embedded, "demo", "--services", "3", "--days", "1", "--seed", "3"))
    assert f"applied {HISTORY[0]}" in first.stdout
    assert "recorded 4320 checks for 3 services" in first.stdout
    assert "Service health" in first.stdout
    assert first.stderr.count(USING) == 1
    assert "embedded PostgreSQL postgresql://postgres@/cim_monitoring" in first.stderr
    assert not postmaster_running(data_dir), "a command stops the server it started"

    report = json.loads(ok(cli(embedded, "status", "--json")).stdout)
    assert [s["service_name"] for s in report["services"]] == [
        "document-ai",
        "file-storage",
        "postgres",
    ]
    again = ok(cli(embedded, "demo", "--services", "3", "--days", "1"))
    written = int(again.stdout.split("recorded ")[1].split()[0])
    assert written <= 6, "a second run continues from the newest checks, it does not redo them"
    assert not postmaster_running(data_dir)


def test_db_start_keeps_the_server_for_other_tools_until_db_stop(
    embedded: dict[str, str],
) -> None:
    data_dir = Path(embedded["CIM_MONITORING_DATA_DIR"])
    not_running = cli(embedded, "db", "url")
    assert not_running.returncode == 1
    assert "cim-monitoring db start" in not_running.stderr

    url = ok(cli(embedded, "db", "start")).stdout.strip()
    assert url.startswith("postgresql://postgres@/cim_monitoring?host=")
    assert ok(cli(embedded, "db", "url")).stdout.strip() == url
    ok(cli(embedded, "migrate"))
    assert postmaster_running(data_dir), "a command must not stop a server `db start` kept"

    # The same database, reached the way alembic or the application would reach it.
    shared = command_env(Path(embedded["CWD"])) | {"DATABASE_URL": url}
    ok(cli(shared, "record", "postgres", "healthy", "--latency-ms", "3"))

    assert "stopped" in ok(cli(embedded, "db", "stop")).stderr
    assert not postmaster_running(data_dir)
    assert "postgres" in ok(cli(embedded, "status")).stdout  # started again, data still there
    assert not postmaster_running(data_dir)


@pytest.mark.parametrize("kill_postmaster", [False, True], ids=["cli-killed", "server-killed"])
def test_a_sigkilled_run_does_not_break_the_next(
    embedded: dict[str, str], kill_postmaster: bool
) -> None:
    data_dir = Path(embedded["CIM_MONITORING_DATA_DIR"])
    ok(cli(embedded, "migrate"))
    long_run = subprocess.Popen(
        [sys.executable, "-m", "cim_monitoring.cli", "demo", "--services", "20", "--days", "30"],
        env=embedded,
        cwd=embedded["CWD"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert long_run.stderr is not None
    assert USING in long_run.stderr.readline()  # the server is up and in use
    server_url = EmbeddedServer(data_dir).running_url()
    assert server_url is not None
    wait_until_writing(server_url)
    postmaster = int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    long_run.send_signal(signal.SIGKILL)
    long_run.wait()
    if kill_postmaster:
        os.kill(postmaster, signal.SIGKILL)  # leaves a stale postmaster.pid and socket lock

    after = ok(cli(embedded, "status", "--json"))
    assert json.loads(after.stdout)["services"] == []  # the killed fill never committed
    assert not postmaster_running(data_dir), "the orphaned server is stopped, not leaked"
    assert json.loads(EmbeddedServer(data_dir).registry.read_text()) == []


# --- URL mode ----------------------------------------------------------------------------


def test_url_mode_demo_status_json_and_alert_lifecycle(url_mode: dict[str, str]) -> None:
    demo = ok(cli(url_mode, "demo", "--services", "4", "--days", "1", "--seed", "11"))
    assert f"applied {HISTORY[-1]}" in demo.stdout
    assert demo.stderr.count(USING) == 1
    assert "postgresql+psycopg://" in demo.stderr

    report = json.loads(ok(cli(url_mode, "status", "--json", "--window", "6h")).stdout)
    assert report["window"] == 6 * 3600  # seconds, as every duration in the JSON
    services = {s["service_name"]: s for s in report["services"]}
    assert set(services) == {"postgres", "file-storage", "document-ai", "llm-api"}
    # One probe a minute (with a few seconds of jitter) over the six hours.
    assert all(359 <= s["checks"] <= 361 for s in services.values())
    assert all(0 < s["uptime"] <= 1 for s in services.values())
    # The demo ends with llm-api in a slow spell, so its high-latency alert is still open.
    assert services["llm-api"]["status"] == "degraded"

    alerts = json.loads(ok(cli(url_mode, "alerts", "--json")).stdout)
    open_alert = next(a for a in alerts if a["service_name"] == "llm-api")
    assert open_alert["alert_type"] == "high_latency"
    alert_id = open_alert["id"]

    assert (
        "acknowledged by alice"
        in ok(cli(url_mode, "alerts", "ack", alert_id, "--by", "alice")).stdout
    )
    one_error_line(cli(url_mode, "alerts", "ack", alert_id, "--by", "alice"), 1, "acknowledged")
    ok(cli(url_mode, "alerts", "resolve", alert_id, "--by", "bob"))
    remaining = json.loads(ok(cli(url_mode, "alerts", "--json")).stdout)
    assert alert_id not in {a["id"] for a in remaining}


def test_record_then_purge_with_dry_run(migrated: dict[str, str]) -> None:
    old = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    ok(cli(migrated, "record", "file-storage", "down", "--error", "HTTP 503", "--at", old))
    stored = json.loads(
        ok(
            cli(
                migrated,
                "record",
                "file-storage",
                "healthy",
                "--latency-ms",
                "41",
                "--detail",
                "http_status=200",
                "--detail",
                "region=eu",
                "--json",
            )
        ).stdout
    )
    assert stored["probe_details"] == {"http_status": 200, "region": "eu"}

    # Its hourly and its daily rollup row are both older than the rollups' 400 days.
    sql(
        migrated,
        "INSERT INTO service_health_checks (service_name, status, created_at) "
        "VALUES ('file-storage', 'healthy', now() - interval '402 days')",
    )

    dry = ok(cli(migrated, "purge", "--older-than", "30d", "--dry-run")).stdout
    # The 402-day check is the service's first status change; newer ones (down, then healthy)
    # tell its status since.
    assert "would delete 2 health checks, 0 resolved alerts and 0 service states from" in dry
    assert "and 2 rollup rows, 1 running totals and 1 status changes older than 400d (dry" in dry
    done = ok(cli(migrated, "purge", "--older-than", "30d")).stdout
    assert "deleted 2 health checks, 0 resolved alerts and 0 service states from before" in done
    assert "and 2 rollup rows, 1 running totals and 1 status changes older than 400d" in done
    report = json.loads(ok(cli(migrated, "status", "--json")).stdout)
    assert [s["status"] for s in report["services"]] == ["healthy"]


def test_doctor_passes_on_a_migrated_database_and_lists_host_tables(
    migrated: dict[str, str],
) -> None:
    sql(migrated, "CREATE TABLE performance_metrics (id bigint PRIMARY KEY, metric_name text)")
    result = ok(cli(migrated, "doctor"))
    assert "✗" not in result.stdout
    assert "host application tables beside ours (1): performance_metrics" in result.stdout
    assert "metric_name text" in result.stdout
    findings = json.loads(ok(cli(migrated, "doctor", "--json")).stdout)
    assert findings
    assert all(f["ok"] and f["fix"] is None for f in findings)
    assert {f["check"] for f in findings} >= {"revision", "columns", "grants", "readers"}


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (
            "DROP INDEX ix_service_health_checks_created_at",
            "index ix_service_health_checks_created_at",
        ),
        ("DROP POLICY alert_events_admin_all ON alert_events", "policy alert_events_admin_all"),
        (
            "ALTER TABLE service_health_checks DISABLE ROW LEVEL SECURITY",
            "row level security is disabled",
        ),
    ],
    ids=["index-dropped", "policy-dropped", "rls-disabled"],
)
def test_doctor_fails_and_names_the_problem(
    migrated: dict[str, str], damage: str, named: str
) -> None:
    sql(migrated, damage)
    result = cli(migrated, "doctor")
    assert result.returncode == 1
    as_json = cli(migrated, "doctor", "--json")
    assert as_json.returncode == 1
    assert any(named in f["message"] and f["fix"] for f in json.loads(as_json.stdout))
    problems = [line for line in result.stdout.splitlines() if line.startswith("✗")]
    named_problem = next(line for line in problems if named in line)
    assert "Fix: " in named_problem


def test_an_unmigrated_database_says_run_migrate_then_migrate_reports(
    url_mode: dict[str, str],
) -> None:
    one_error_line(cli(url_mode, "status"), 1, "run `cim-monitoring migrate`")
    doctor = cli(url_mode, "doctor")
    assert doctor.returncode == 1
    assert "run `cim-monitoring migrate`" in doctor.stdout

    applied = ok(cli(url_mode, "migrate")).stdout.splitlines()
    assert [line.split()[1] for line in applied] == HISTORY
    assert "nothing to apply" in ok(cli(url_mode, "migrate")).stdout


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("status", "--window", "3x"),
        ("purge", "--older-than", "0s"),
        ("alerts", "ack", "not-an-id", "--by", "alice"),
        ("record", "api", "sideways"),
    ],
    ids=["window", "older-than", "alert-id", "status-value"],
)
def test_usage_errors_exit_2_with_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    # Arguments are checked before any database is touched: none is needed here.
    one_error_line(cli(command_env(tmp_path), *args), 2)


def test_unknown_alert_id_exits_2(migrated: dict[str, str]) -> None:
    unknown = str(uuid.uuid4())
    one_error_line(cli(migrated, "alerts", "resolve", unknown, "--by", "bob"), 2, unknown)


def test_unreachable_database_is_one_line_without_the_password(tmp_path: Path) -> None:
    env = command_env(tmp_path) | {"DATABASE_URL": "postgresql://app:s3cret@127.0.0.1:1/app"}
    result = cli(env, "status")
    one_error_line(result, 1, "cannot reach the database")
    assert "s3cret" not in result.stderr + result.stdout
