"""The embedded PostgreSQL: started on demand, stopped by its last user, kept by ``db start``,
and recovered from what a killed run leaves behind (dead users, stale ``postmaster.pid``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
from command import cli, command_env, ok

from cim_monitoring.cli.embedded import DATABASE_NAME, EmbeddedServer
from cim_monitoring.errors import DatabaseUnavailable


@pytest.fixture
def server(embedded_data_dir: Path) -> Iterator[EmbeddedServer]:
    embedded = EmbeddedServer(embedded_data_dir / "data")
    yield embedded
    embedded.stop()


def query(url: str, sql: str) -> tuple[object, ...] | None:
    with psycopg.connect(url) as connection:
        cursor = connection.execute(sql)
        return cursor.fetchone() if cursor.description else None


def pidfile(server: EmbeddedServer) -> Path:
    return server.pgdata / "postmaster.pid"


def users(server: EmbeddedServer) -> list[int]:
    """The pids in the registry of processes using the server."""
    return [entry["pid"] for entry in json.loads(server.registry.read_text())]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_in_use_gives_a_utf8_database_and_stops_the_server_after(
    server: EmbeddedServer,
) -> None:
    with server.in_use() as url:
        assert url.database == DATABASE_NAME
        assert server.running_url() == url
        encoding = query(
            url.render_as_string(),
            "SELECT pg_encoding_to_char(encoding) FROM pg_database "
            "WHERE datname = current_database()",
        )
        assert encoding == ("UTF8",)
        query(url.render_as_string(), "CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")
    assert server.running_url() is None
    assert not pidfile(server).exists()
    with server.in_use() as url:
        assert query(url.render_as_string(), "SELECT n FROM kept") == (7,)


def test_dead_users_in_the_registry_do_not_keep_the_server_running(
    server: EmbeddedServer,
) -> None:
    with server.in_use():
        pass
    # What a SIGKILLed command leaves: its pid still registered as a user of the server. After
    # a restart (a container's pids start over) that pid may name another, living process.
    living = psutil.Process(os.getppid())
    server.registry.write_text(
        json.dumps(
            [
                {"pid": dead_pid(), "started": 0.0},
                {"pid": living.pid, "started": living.create_time() - 1},
            ]
        )
    )
    with server.in_use():
        assert users(server) == [os.getpid()]
    assert users(server) == []
    assert server.running_url() is None


def test_a_second_process_leaving_does_not_stop_the_server_the_first_still_uses(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    env = command_env(tmp_path) | {"CIM_MONITORING_DATA_DIR": str(server.data_dir)}
    with server.in_use() as url:
        ok(cli(env, "migrate"))  # joins the running server, then leaves it
        assert server.running_url() == url
        assert users(server) == [os.getpid()]
        assert query(url.render_as_string(), "SELECT 1") == (1,)
    assert server.running_url() is None, "the last user to leave stops it"


def test_a_nested_use_leaving_does_not_stop_the_server_the_outer_one_uses(
    server: EmbeddedServer,
) -> None:
    with server.in_use() as url:
        with server.in_use():
            assert users(server) == [os.getpid(), os.getpid()]
        assert users(server) == [os.getpid()]
        assert query(url.render_as_string(), "SELECT 1") == (1,)
    assert server.running_url() is None


def test_a_stale_postmaster_pid_naming_another_process_is_cleared(
    server: EmbeddedServer,
) -> None:
    server.start_and_keep()
    lines = pidfile(server).read_text().splitlines()
    os.kill(int(lines[0]), signal.SIGKILL)
    # The crash is followed by a pid reuse (a restarted container): the pid in the file is
    # alive but is not PostgreSQL. Both PostgreSQL and pgserver would take it for the server.
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as impostor:
        try:
            pidfile(server).write_text("\n".join([str(impostor.pid), *lines[1:]]) + "\n")
            with server.in_use() as url:
                assert query(url.render_as_string(), "SELECT 1") == (1,)
        finally:
            impostor.kill()
    assert server.running_url() is None, "the keep marker named the dead server, not this one"


def test_db_start_keeps_the_server_until_stop(server: EmbeddedServer) -> None:
    url = server.start_and_keep()
    with server.in_use() as joined:
        assert joined == url
    assert server.running_url() == url, "a command leaves a kept server running"
    assert server.stop() is True
    assert server.running_url() is None
    assert server.stop() is False


def test_data_from_another_postgresql_version_is_a_clear_error(server: EmbeddedServer) -> None:
    server.pgdata.mkdir(parents=True)
    (server.pgdata / "PG_VERSION").write_text("12\n")
    with pytest.raises(DatabaseUnavailable, match="PostgreSQL 12 data"), server.in_use():
        pass
