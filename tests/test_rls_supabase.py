"""The Supabase path of the RLS migration, on a fresh database set up like a Supabase project.

Supabase's roles (``anon``, ``authenticated``, ``service_role``) are cluster-wide, and the
migration looks for exactly those names, so they cannot be made unique per test. The module
fixture creates whichever are missing, holds a cluster-wide advisory lock (taken in the
server's maintenance database) so that concurrent test sessions on the same server take turns,
and drops what it created before the next module runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from catalog import table_privileges
from psycopg import errors as pg_errors
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.pool import NullPool

from cim_monitoring import make_engine, migrations
from cim_monitoring.migrations import VERSION_TABLE

if TYPE_CHECKING:
    from conftest import PostgresServer

TABLES = ("service_health_checks", "alert_events")
# Written by the trigger on service_health_checks; seeded through it, so not in TABLES.
ROLLUPS = ("service_health_hourly", "service_health_daily")
POLICED = {"SELECT", "INSERT", "UPDATE", "DELETE"}
SUPABASE_ROLES = {
    "anon": "NOLOGIN",
    "authenticated": "NOLOGIN",
    "service_role": "NOLOGIN BYPASSRLS",
}
ROLES_LOCK_KEY = 0x63696D2D726F6C  # "cim-rol"
# What a Supabase project has before our migration runs.
SUPABASE_SETUP = [
    "CREATE SCHEMA auth",
    """
    CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$
        SELECT coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb
    $$
    """,
    "GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role",
    "GRANT EXECUTE ON FUNCTION auth.jwt() TO anon, authenticated, service_role",
    "GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
    "GRANT ALL ON TABLES TO anon, authenticated, service_role",
]
INSERTS = {
    "service_health_checks": "INSERT INTO service_health_checks (service_name, status) "
    "VALUES (:service, 'healthy')",
    "alert_events": "INSERT INTO alert_events (service_name, alert_type, severity, message) "
    "VALUES (:service, 'service_down', 'critical', 'down')",
}
ADMIN_CLAIMS = {"sub": "u1", "role": "authenticated", "app_metadata": {"role": "admin"}}
NOT_ADMIN_CLAIMS = {
    "user-metadata-admin": {"sub": "u2", "user_metadata": {"role": "admin"}},
    "app-metadata-user": {"sub": "u3", "app_metadata": {"role": "user"}},
    "top-level-admin": {"sub": "u4", "role": "admin"},
    "empty-claims": {},
    "no-claims": None,
}


def _drop_roles(server: PostgresServer, admin: Connection, roles: list[str]) -> None:
    """Drop ``roles`` after removing every privilege they hold in any database of the cluster
    (a concurrent session may have migrated its own database while they existed)."""
    if not roles:
        return
    databases = admin.execute(
        text(
            "SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid "
            "WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid IN "
            "(SELECT oid FROM pg_roles WHERE rolname = ANY(:roles))"
        ),
        {"roles": roles},
    ).scalars()
    for database in databases:
        engine = create_engine(
            server.admin_url.set(database=database),
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
        )
        with engine.connect() as connection:
            connection.execute(text(f"DROP OWNED BY {', '.join(roles)}"))
        engine.dispose()
    admin.execute(text(f"DROP ROLE {', '.join(roles)}"))


@pytest.fixture(scope="module")
def supabase_engine(pg_server: PostgresServer) -> Iterator[Engine]:
    admin_engine = create_engine(
        pg_server.admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    with admin_engine.connect() as admin:
        admin.execute(text("SET lock_timeout = '120s'"))
        admin.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ROLES_LOCK_KEY})
        existing = set(
            admin.execute(
                text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:roles)"),
                {"roles": list(SUPABASE_ROLES)},
            ).scalars()
        )
        created = [role for role in SUPABASE_ROLES if role not in existing]
        url: URL | None = None
        try:
            for role in created:
                admin.execute(text(f"CREATE ROLE {role} {SUPABASE_ROLES[role]}"))
            url = pg_server.create_database()
            engine = make_engine(url, poolclass=NullPool)
            with engine.begin() as connection:
                for statement in SUPABASE_SETUP:
                    connection.execute(text(statement))
            with engine.begin() as connection:
                migrations.upgrade(connection)
            yield engine
            engine.dispose()
        finally:
            # The database goes first: it holds the grants and default ACLs naming the roles.
            if url is not None:
                admin.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
            _drop_roles(pg_server, admin, created)
            admin.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ROLES_LOCK_KEY})
    admin_engine.dispose()


@pytest.fixture
def sb(supabase_engine: Engine) -> Iterator[Connection]:
    """A superuser connection to the Supabase-like database; everything is rolled back."""
    with supabase_engine.connect() as connection:
        transaction = connection.begin()
        for table in TABLES:
            for i in range(2):
                connection.execute(text(INSERTS[table]), {"service": f"seed-{i}"})
        yield connection
        transaction.rollback()


def _as(connection: Connection, role: str, claims: dict[str, object] | None = None) -> None:
    connection.execute(text(f"SET LOCAL ROLE {role}"))
    if claims is not None:
        connection.execute(
            text("SELECT set_config('request.jwt.claims', :claims, true)"),
            {"claims": json.dumps(claims)},
        )


def _count(connection: Connection, table: str) -> int:
    return connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_default_privileges_were_in_effect(sb: Connection) -> None:
    """Without the migration's REVOKE, a new table hands anon and authenticated everything."""
    sb.execute(text("CREATE TABLE host_app_table (id int)"))
    assert "TRUNCATE" in table_privileges(sb, "host_app_table", "anon")
    assert "TRUNCATE" in table_privileges(sb, "host_app_table", "authenticated")


@pytest.mark.parametrize("table", [*TABLES, *ROLLUPS])
def test_table_privileges(sb: Connection, table: str) -> None:
    assert table_privileges(sb, table, "anon") == set()
    assert table_privileges(sb, table, "authenticated") == POLICED
    assert table_privileges(sb, table, "service_role") >= POLICED
    assert table_privileges(sb, table, "PUBLIC") == set()


def test_version_table_hidden_from_api_roles(sb: Connection) -> None:
    for role in ("anon", "authenticated", "service_role"):
        assert table_privileges(sb, VERSION_TABLE, role) == set()


def test_policies(sb: Connection) -> None:
    policies = sb.execute(
        text(
            "SELECT tablename, policyname, roles::text[], cmd, qual, with_check FROM pg_policies "
            "WHERE schemaname = 'public' AND tablename <> :version ORDER BY tablename, policyname"
        ),
        {"version": VERSION_TABLE},
    ).all()
    names = [(p.tablename, p.policyname, p.roles, p.cmd) for p in policies]
    assert names == [
        (t, f"{t}_{suffix}", [role], "ALL")
        for t in sorted((*TABLES, *ROLLUPS))
        for suffix, role in [("admin_all", "monitoring_admin"), ("jwt_admin", "authenticated")]
    ]
    for policy in policies:
        if policy.policyname.endswith("_jwt_admin"):
            for expression in (policy.qual, policy.with_check):
                assert "app_metadata" in expression
                assert "user_metadata" not in expression


@pytest.mark.parametrize("table", TABLES)
def test_authenticated_admin_claim_gets_in(sb: Connection, table: str) -> None:
    _as(sb, "authenticated", ADMIN_CLAIMS)
    assert _count(sb, table) == 2
    sb.execute(text(INSERTS[table]), {"service": "by-admin"})
    assert _count(sb, table) == 3
    assert sb.execute(text(f"DELETE FROM {table} WHERE service_name = 'by-admin'")).rowcount == 1


@pytest.mark.parametrize("claims", NOT_ADMIN_CLAIMS.values(), ids=NOT_ADMIN_CLAIMS.keys())
@pytest.mark.parametrize("table", TABLES)
def test_authenticated_without_admin_claim_is_kept_out(
    sb: Connection, table: str, claims: dict[str, object] | None
) -> None:
    _as(sb, "authenticated", claims)
    assert _count(sb, table) == 0
    assert sb.execute(text(f"DELETE FROM {table}")).rowcount == 0
    with pytest.raises(ProgrammingError) as caught, sb.begin_nested():
        sb.execute(text(INSERTS[table]), {"service": "intruder"})
    assert isinstance(caught.value.orig, pg_errors.InsufficientPrivilege)
    assert "row-level security" in str(caught.value.orig)
    with pytest.raises(ProgrammingError) as caught, sb.begin_nested():
        sb.execute(text(f"TRUNCATE {table}"))
    assert isinstance(caught.value.orig, pg_errors.InsufficientPrivilege)


@pytest.mark.parametrize("table", TABLES)
def test_service_role_bypasses_rls(sb: Connection, table: str) -> None:
    _as(sb, "service_role")
    assert _count(sb, table) == 2
    sb.execute(text(INSERTS[table]), {"service": "by-service-role"})
    assert _count(sb, table) == 3


@pytest.mark.parametrize("table", TABLES)
def test_anon_is_refused(sb: Connection, table: str) -> None:
    _as(sb, "anon", ADMIN_CLAIMS)  # even a forged admin claim does not help without privileges
    with pytest.raises(ProgrammingError) as caught, sb.begin_nested():
        _count(sb, table)
    assert isinstance(caught.value.orig, pg_errors.InsufficientPrivilege)


@pytest.mark.parametrize("rollup", ROLLUPS)
def test_rollups_follow_the_checks_for_an_admin_claim_only(sb: Connection, rollup: str) -> None:
    """The rollup trigger runs as the inserting role: an admin claim may write the rollups
    through it, and without the claim they stay invisible."""
    _as(sb, "authenticated", ADMIN_CLAIMS)
    sb.execute(text(INSERTS["service_health_checks"]), {"service": "by-admin"})
    assert _count(sb, rollup) == 3  # the two seeded services and this one
    sb.execute(text("RESET ROLE"))
    _as(sb, "authenticated", NOT_ADMIN_CLAIMS["user-metadata-admin"])
    assert _count(sb, rollup) == 0
