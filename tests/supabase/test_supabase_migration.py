"""Migrating on Supabase: no committed state is open to the API roles, and the result verifies.

Supabase's default privileges grant ``anon`` ALL on every table created in ``public``, so a
monitoring table committed before its protection would be readable and writable with the public
API key. The interim states are replayed here as a deploy would leave them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from access import ANON, NOT_ADMINS
from alembic_cli import history_with_extra_revision, upgrade_history
from conftest import SupabaseCluster, SupabaseDatabase, create_supabase_database
from postgrest_requests import Api
from sqlalchemy import Engine, text

from cim_monitoring import migrations, verify_database
from cim_monitoring.objects import VERSION_TABLE

FIRST = migrations.history()[0]


def test_doctor_passes_right_after_migrating(supabase_db: SupabaseDatabase) -> None:
    for user in (supabase_db.migrator, "cim_app"):
        engine = supabase_db.engine(user)
        failed = [finding for finding in verify_database(engine) if not finding.ok]
        engine.dispose()
        assert failed == [], user


@pytest.fixture
def fresh(supabase_cluster: SupabaseCluster) -> Iterator[tuple[Engine, Api]]:
    """A new Supabase database, not migrated, with the migrating role's engine and PostgREST."""
    name = f"cim_interim_{uuid.uuid4().hex[:8]}"
    create_supabase_database(supabase_cluster, name)
    engine = supabase_cluster.engine("postgres", name)
    api = Api(supabase_cluster.url("authenticator", name))
    yield engine, api
    api.close()
    engine.dispose()
    supabase_cluster.execute([f"DROP DATABASE {name} WITH (FORCE)"])


def _tables(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.scalars(
                text(
                    "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                    "AND relkind IN ('r', 'p') ORDER BY relname"
                )
            )
        )


def _assert_closed_to_the_api(engine: Engine, api: Api) -> None:
    tables = _tables(engine)
    assert tables, "nothing to probe"
    for caller in (ANON, *NOT_ADMINS):
        for table in tables:
            try:
                rows = api.request(caller, f"SELECT * FROM public.{table}").rows
            except psycopg.errors.InsufficientPrivilege:
                continue
            assert caller.role == "authenticated"
            assert rows == [], (caller.name, table)


def test_the_first_revision_commits_nothing_open(fresh: tuple[Engine, Api]) -> None:
    """Even a runner that commits revision by revision (pytest-alembic does) leaves the tables
    of the first revision shut to every API role."""
    engine, api = fresh
    migrations.upgrade(engine, FIRST)
    assert {"service_health_checks", "alert_events", VERSION_TABLE} <= set(_tables(engine))
    _assert_closed_to_the_api(engine, api)


def test_a_failing_later_revision_commits_nothing(
    fresh: tuple[Engine, Api], tmp_path: Path
) -> None:
    engine, api = fresh
    ini = history_with_extra_revision(
        tmp_path,
        revision="fa11ed0000sb",
        message="fails after the whole history",
        upgrade=["op.execute(\"SET LOCAL lock_timeout = '5s'\")", 'raise RuntimeError("boom")'],
    )
    with engine.connect() as connection, pytest.raises(RuntimeError, match="boom"):
        upgrade_history(ini, connection)
    assert _tables(engine) == []
    migrations.upgrade(engine)
    _assert_closed_to_the_api(engine, api)
