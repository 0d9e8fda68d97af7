"""cim-monitoring inside a real host application's database.

The host (tests/host_app) has its own models and its own two-revision Alembic history in
``alembic_version``; it connects as an ordinary login role that is a member of
``monitoring_admin``. Every command runs as a process, the way a deploy runs it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from command import cli, command_env, host_alembic, ok, one_error_line
from host_app.host_models import HostBase
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from cim_monitoring import make_engine, make_session_factory, migrations, raise_alert
from cim_monitoring.migrations import LEGACY_VERSION_TABLE, VERSION_TABLE, State

HOST_HEAD = "host_0002"
LAST_LEGACY = "b7e5d3c1a902"  # the head of every database migrated before our own version table


@pytest.fixture
def url(empty_database_url: URL) -> URL:
    return empty_database_url


@pytest.fixture
def engine(empty_engine: Engine) -> Engine:
    return empty_engine


@pytest.fixture
def env(tmp_path: Path, url: URL) -> dict[str, str]:
    return command_env(tmp_path, url)


def _rows(engine: Engine, table: str) -> list[str]:
    with engine.connect() as connection:
        if connection.scalar(text("SELECT to_regclass(:t)"), {"t": table}) is None:
            return []
        return sorted(connection.scalars(text(f"SELECT version_num FROM {table}")))


def _assert_both_at_head(engine: Engine, env: dict[str, str]) -> None:
    assert _rows(engine, LEGACY_VERSION_TABLE) == [HOST_HEAD]
    assert _rows(engine, VERSION_TABLE) == list(migrations.heads())
    # Each history's own check is clean with the other's tables in the same schema.
    ok(host_alembic(env, "check"))
    with engine.connect() as connection:
        command.check(migrations.alembic_config(connection))
    assert "nothing to apply" in ok(cli(env, "migrate")).stdout
    assert "Running upgrade" not in ok(host_alembic(env, "upgrade", "head")).stderr


def test_host_history_first_then_ours(engine: Engine, env: dict[str, str]) -> None:
    ok(host_alembic(env, "upgrade", "head"))
    migrated = ok(cli(env, "migrate")).stdout.splitlines()
    assert [line.split()[1] for line in migrated] == migrations.history()
    _assert_both_at_head(engine, env)


def test_our_history_first_then_the_host(engine: Engine, env: dict[str, str]) -> None:
    assert migrations.upgrade(engine) == migrations.history()
    upgraded = ok(host_alembic(env, "upgrade", "head"))
    assert "Running upgrade host_0001 -> host_0002" in upgraded.stderr
    _assert_both_at_head(engine, env)


def test_the_host_env_py_brings_ours_along(engine: Engine, env: dict[str, str]) -> None:
    ok(host_alembic(env | {"HOST_MIGRATES_MONITORING": "1"}, "upgrade", "head"))
    _assert_both_at_head(engine, env)


def test_host_autogenerate_sees_none_of_our_objects(engine: Engine, env: dict[str, str]) -> None:
    ok(host_alembic(env, "upgrade", "head"))
    migrations.upgrade(engine)
    with engine.connect() as connection:
        filtered = MigrationContext.configure(
            connection, opts={"include_name": migrations.host_include_name}
        )
        unfiltered = MigrationContext.configure(connection)
        assert compare_metadata(filtered, HostBase.metadata) == []
        # Without the filter the host would be told to drop every table of ours.
        dropped = {
            diff[1].name
            for diff in compare_metadata(unfiltered, HostBase.metadata)
            if diff[0] == "remove_table"
        }
    assert dropped >= {VERSION_TABLE, "service_health_checks", "alert_events"}


def _make_legacy(engine: Engine) -> None:
    """A database as cim-monitoring left it before it had its own version table: migrated to
    the last revision of that time, the revision in ``alembic_version``, data in the tables."""
    migrations.upgrade(engine, LAST_LEGACY)
    with engine.begin() as connection:
        connection.execute(text(f"ALTER TABLE {VERSION_TABLE} RENAME TO {LEGACY_VERSION_TABLE}"))
        connection.execute(
            text(
                f"ALTER TABLE {LEGACY_VERSION_TABLE} RENAME CONSTRAINT {VERSION_TABLE}_pkc "
                f"TO {LEGACY_VERSION_TABLE}_pkc"
            )
        )
        connection.execute(
            text(
                "INSERT INTO service_health_checks (service_name, status, latency_ms) "
                "SELECT 'svc-' || n, 'healthy', n FROM generate_series(1, 50) AS n"
            )
        )


def _checksum(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT count(*), sum(latency_ms) FROM service_health_checks")
        ).one()
    return row[0], row[1]


def test_a_legacy_database_is_adopted_then_the_host_migrates(
    engine: Engine, env: dict[str, str]
) -> None:
    _make_legacy(engine)
    assert migrations.state(engine).state is State.LEGACY
    before = _checksum(engine)
    doctor = cli(env, "doctor")
    assert doctor.returncode == 1
    assert f"recorded in {LEGACY_VERSION_TABLE} by an older cim-monitoring" in doctor.stdout

    migrated = ok(cli(env, "migrate")).stdout
    assert f"adopted revision {LAST_LEGACY} from {LEGACY_VERSION_TABLE}" in migrated
    pending = migrations.history()[migrations.history().index(LAST_LEGACY) + 1 :]
    assert [line.split()[1] for line in migrated.splitlines()[1:]] == pending
    assert _checksum(engine) == before
    # Nothing else was in alembic_version, so it went; the host's Alembic now starts afresh.
    assert _rows(engine, LEGACY_VERSION_TABLE) == []
    ok(host_alembic(env, "upgrade", "head"))
    _assert_both_at_head(engine, env)
    assert "✗" not in ok(cli(env, "doctor")).stdout


def test_adoption_leaves_the_host_rows_in_alembic_version(engine: Engine) -> None:
    _make_legacy(engine)
    with engine.begin() as connection:
        connection.execute(
            text(f"INSERT INTO {LEGACY_VERSION_TABLE} (version_num) VALUES (:host)"),
            {"host": HOST_HEAD},
        )
    migrations.upgrade(engine)
    assert _rows(engine, LEGACY_VERSION_TABLE) == [HOST_HEAD]
    assert _rows(engine, VERSION_TABLE) == list(migrations.heads())


# --- the application's login role ----------------------------------------------------------


@pytest.fixture
def app_role(engine: Engine, url: URL) -> Iterator[URL]:
    """A login role like the application's: ordinary, a member of monitoring_admin."""
    name = f"cim_app_{uuid.uuid4().hex[:10]}"
    migrations.upgrade(engine)  # creates monitoring_admin
    with engine.begin() as connection:
        connection.execute(text(f"CREATE ROLE {name} LOGIN PASSWORD 'app-secret'"))
        connection.execute(text(f"GRANT monitoring_admin TO {name}"))
    yield url.set(username=name, password="app-secret")
    with engine.begin() as connection:
        connection.execute(text(f"DROP OWNED BY {name}"))
        connection.execute(text(f"DROP ROLE {name}"))


def test_the_app_role_runs_every_command(app_role: URL, tmp_path: Path) -> None:
    env = command_env(tmp_path, app_role)
    assert "nothing to apply" in ok(cli(env, "migrate")).stdout

    old = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    ok(cli(env, "record", "llm-api", "down", "--error", "timeout", "--at", old))
    ok(cli(env, "record", "llm-api", "healthy", "--latency-ms", "840"))
    report = json.loads(ok(cli(env, "status", "--json")).stdout)
    assert [(s["service_name"], s["status"]) for s in report["services"]] == [
        ("llm-api", "healthy")
    ]

    app_engine = make_engine(app_role, poolclass=NullPool)
    with make_session_factory(app_engine).begin() as session:
        alert = raise_alert(
            session,
            {
                "service_name": "llm-api",
                "alert_type": "high_latency",
                "severity": "warning",
                "message": "p95 above 2 s",
            },
        )
    app_engine.dispose()
    listed = json.loads(ok(cli(env, "alerts", "--json")).stdout)
    assert [a["id"] for a in listed] == [str(alert.id)]
    ok(cli(env, "alerts", "ack", str(alert.id), "--by", "alice"))
    ok(cli(env, "alerts", "resolve", str(alert.id), "--by", "bob"))

    assert "would delete 1 health checks" in ok(cli(env, "purge", "--dry-run")).stdout
    assert "deleted 1 health checks" in ok(cli(env, "purge")).stdout
    doctor = ok(cli(env, "doctor")).stdout
    assert "✗" not in doctor


def test_the_app_role_cannot_apply_pending_revisions(
    tmp_path: Path, engine: Engine, app_role: URL
) -> None:
    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE {VERSION_TABLE}"))  # as if never migrated
    line = one_error_line(cli(command_env(tmp_path, app_role), "migrate"), 1, app_role.username)
    assert "lacks a privilege" in line
    assert "permission denied for" in line


# --- what doctor and the commands tell apart ------------------------------------------------


def test_not_migrated_foreign_and_missing_are_told_apart(
    engine: Engine, env: dict[str, str]
) -> None:
    fresh = cli(env, "doctor")
    assert fresh.returncode == 1
    assert "no cim-monitoring schema yet. Fix: run `cim-monitoring migrate`" in fresh.stdout
    one_error_line(cli(env, "status"), 1, "no cim-monitoring schema yet")

    migrations.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alert_events"))
    missing = cli(env, "doctor")
    assert missing.returncode == 1
    assert "table alert_events is missing" in missing.stdout

    with engine.begin() as connection:
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'f0f0f0f0f0f0'"))
    foreign = cli(env, "doctor")
    assert foreign.returncode == 1
    assert "holds revision f0f0f0f0f0f0, which this cim-monitoring" in foreign.stdout
    for args in (("status",), ("migrate",)):
        one_error_line(cli(env, *args), 1, "f0f0f0f0f0f0", "upgrade the package")
    for result in (fresh, missing, foreign):
        assert "Traceback" not in result.stderr
