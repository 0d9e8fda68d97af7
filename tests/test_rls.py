"""Row Level Security: only monitoring_admin (and its members) may touch the monitoring tables;
and, from the catalogue, no object of ours (sequences and functions too) is open to PUBLIC and
every function pins its search_path.

The fixtures connect as a superuser, who bypasses RLS, so every denial is observed after
``SET LOCAL ROLE`` to a throwaway NOLOGIN role created inside the test's transaction (roles are
transactional: the rollback at teardown removes them).
"""

from __future__ import annotations

import uuid

import pytest
from catalog import ours, schema_contents, table_privileges
from documented import ADMIN_SIDE_PRIVILEGES
from psycopg import errors as pg_errors
from samples import insert
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError, ProgrammingError

from cim_monitoring import ObjectKind, owned_objects, role_privileges

TABLES = ("service_health_checks", "alert_events", "service_health_hourly", "service_health_daily")
POLICED = {"SELECT", "INSERT", "UPDATE", "DELETE"}
UPDATES = {
    "service_health_checks": "UPDATE service_health_checks SET latency_ms = 1",
    "alert_events": "UPDATE alert_events SET occurrence_count = occurrence_count + 1",
    "service_health_hourly": "UPDATE service_health_hourly SET healthy = healthy + 1",
    "service_health_daily": "UPDATE service_health_daily SET healthy = healthy + 1",
}


def assert_updates(connection: Connection, table: str, expected: int) -> None:
    """UPDATE reaches ``expected`` rows, or, on the append-only checks, refuses to change any."""
    if table == "service_health_checks" and expected:
        with pytest.raises(IntegrityError, match="append-only"), connection.begin_nested():
            connection.execute(text(UPDATES[table]))
    else:
        assert connection.execute(text(UPDATES[table])).rowcount == expected


def create_role(connection: Connection, *, grants: bool, admin: bool = False) -> str:
    name = f"cim_test_role_{uuid.uuid4().hex[:12]}"
    connection.execute(text(f"CREATE ROLE {name} NOLOGIN NOSUPERUSER NOBYPASSRLS"))
    if grants:
        connection.execute(
            text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(TABLES)} TO {name}")
        )
    if admin:
        connection.execute(text(f"GRANT monitoring_admin TO {name}"))
    return name


def seed(connection: Connection, table: str, rows: int = 2) -> None:
    for i in range(rows):
        connection.execute(text(insert(table, f"seed-{i}")))


def count(connection: Connection, table: str) -> int:
    return connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_rls_enabled_and_forced(connection: Connection) -> None:
    rows = connection.execute(
        text(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
            "WHERE relname = ANY(:tables) AND relkind IN ('r', 'p')"
        ),
        {"tables": list(TABLES)},
    ).all()
    assert sorted(rows) == [(table, True, True) for table in sorted(TABLES)]


def test_every_table_the_migrations_create_is_forced(connection: Connection) -> None:
    """Not only the tables named here: a future revision's new table is caught too."""
    unprotected = connection.execute(
        text(
            "SELECT c.relname FROM pg_class AS c "
            "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') "
            "AND c.relname <> 'cim_monitoring_alembic_version' "
            "AND NOT (c.relrowsecurity AND c.relforcerowsecurity)"
        )
    ).scalars()
    assert list(unprotected) == []


def test_the_version_table_has_rls_enabled_and_one_read_policy(connection: Connection) -> None:
    """Enabled, not forced (whoever migrates owns and writes it); monitoring_admin may read it,
    nobody else gets a row even with a privilege."""
    protection = connection.execute(
        text(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
            "WHERE oid = 'cim_monitoring_alembic_version'::regclass"
        )
    ).one()
    assert tuple(protection) == (True, False)
    policies = connection.execute(
        text(
            "SELECT policyname, permissive, roles::text[], cmd, qual FROM pg_policies "
            "WHERE tablename = 'cim_monitoring_alembic_version'"
        )
    ).all()
    assert [tuple(p) for p in policies] == [
        (
            "cim_monitoring_alembic_version_admin_read",
            "PERMISSIVE",
            ["monitoring_admin"],
            "SELECT",
            "true",
        )
    ]


def test_admin_policies(connection: Connection) -> None:
    policies = connection.execute(
        text(
            "SELECT tablename, policyname, permissive, roles::text[], cmd, qual, with_check "
            "FROM pg_policies WHERE schemaname = 'public' AND tablename = ANY(:tables)"
        ),
        {"tables": list(TABLES)},
    ).all()
    assert sorted(policies) == [
        (t, f"{t}_admin_all", "PERMISSIVE", ["monitoring_admin"], "ALL", "true", "true")
        for t in sorted(TABLES)
    ]


@pytest.mark.parametrize("table", [*TABLES, "cim_monitoring_alembic_version"])
def test_no_privilege_for_public(connection: Connection, table: str) -> None:
    acl = connection.execute(
        text("SELECT relacl::text[] FROM pg_class WHERE oid = CAST(:t AS regclass)"), {"t": table}
    ).scalar_one()
    # NULL would mean "default privileges"; the migration's REVOKE must leave an explicit ACL.
    assert acl is not None
    assert table_privileges(connection, table, "PUBLIC") == set()


def test_monitoring_admin_privileges(connection: Connection) -> None:
    for table in TABLES:
        assert table_privileges(connection, table, "monitoring_admin") == POLICED


@pytest.mark.parametrize("table", TABLES)
def test_outsider_with_privileges_sees_and_changes_nothing(
    connection: Connection, table: str
) -> None:
    seed(connection, table)
    role = create_role(connection, grants=True)
    connection.execute(text(f"SET LOCAL ROLE {role}"))
    assert connection.execute(text("SELECT current_user")).scalar_one() == role

    assert count(connection, table) == 0
    assert_updates(connection, table, 0)
    assert connection.execute(text(f"DELETE FROM {table}")).rowcount == 0
    with pytest.raises(ProgrammingError) as caught, connection.begin_nested():
        connection.execute(text(insert(table, "intruder")))
    assert isinstance(caught.value.orig, pg_errors.InsufficientPrivilege)
    assert "row-level security policy" in str(caught.value.orig)

    connection.execute(text("RESET ROLE"))
    # Nothing changed underneath: the seeded rows are intact and nobody else got in.
    assert count(connection, table) == 2
    assert_updates(connection, table, 2)


@pytest.mark.parametrize("table", TABLES)
def test_outsider_without_privileges_is_refused(connection: Connection, table: str) -> None:
    role = create_role(connection, grants=False)
    connection.execute(text(f"SET LOCAL ROLE {role}"))
    with pytest.raises(ProgrammingError) as caught, connection.begin_nested():
        count(connection, table)
    assert isinstance(caught.value.orig, pg_errors.InsufficientPrivilege)


@pytest.mark.parametrize("table", TABLES)
def test_owner_is_held_to_the_policies(connection: Connection, table: str) -> None:
    """FORCE ROW LEVEL SECURITY: a non-superuser owner gets no free pass either."""
    seed(connection, table)
    role = create_role(connection, grants=False)
    connection.execute(text(f"ALTER TABLE {table} OWNER TO {role}"))
    connection.execute(text(f"SET LOCAL ROLE {role}"))
    assert count(connection, table) == 0
    with pytest.raises(ProgrammingError) as caught, connection.begin_nested():
        connection.execute(text(insert(table, "owner")))
    assert isinstance(caught.value.orig, pg_errors.InsufficientPrivilege)


@pytest.mark.parametrize("table", TABLES)
def test_member_of_monitoring_admin_has_full_access(connection: Connection, table: str) -> None:
    seed(connection, table)
    role = create_role(connection, grants=False, admin=True)
    connection.execute(text(f"SET LOCAL ROLE {role}"))

    assert count(connection, table) == 2
    connection.execute(text(insert(table, "member")))
    assert count(connection, table) == 3
    assert_updates(connection, table, 3)
    assert connection.execute(text(f"DELETE FROM {table}")).rowcount == 3
    assert count(connection, table) == 0


def test_public_holds_nothing_on_any_object_of_ours(connection: Connection) -> None:
    """Tables, sequences, functions (PostgreSQL grants PUBLIC EXECUTE on new ones), the schema."""
    objects = owned_objects(connection)
    kinds = {o.kind for o in objects}
    assert {ObjectKind.SEQUENCE, ObjectKind.FUNCTION, ObjectKind.SCHEMA} <= kinds
    held = {o.identity: role_privileges(connection, o, "PUBLIC") for o in objects}
    assert held == {identity: frozenset() for identity in held}


def test_monitoring_admin_holds_exactly_the_documented_privileges(connection: Connection) -> None:
    objects = owned_objects(connection)
    held = {
        (o.kind, o.identity): role_privileges(connection, o, "monitoring_admin") for o in objects
    }
    assert held == {(kind, identity): ADMIN_SIDE_PRIVILEGES[kind] for kind, identity in held}


def test_the_listing_misses_nothing_in_our_schemas(connection: Connection) -> None:
    listed = {o.identity for o in owned_objects(connection)}
    assert schema_contents(connection, ["public", "cim_monitoring"]) - listed == set()


def test_every_function_pins_an_empty_search_path(connection: Connection) -> None:
    functions = ours(connection, ObjectKind.FUNCTION, ObjectKind.TRIGGER_FUNCTION)
    settings = {
        f.identity: connection.execute(
            text("SELECT proconfig FROM pg_proc WHERE oid = :oid"), {"oid": f.oid}
        ).scalar_one()
        for f in functions
    }
    assert settings == {identity: ['search_path=""'] for identity in settings}


def test_the_partition_upkeep_pins_its_settings(connection: Connection) -> None:
    """Security definers: an empty search_path, UTC (partition names and bounds are UTC days),
    a bounded wait for locks; the drop counts every row or fails (row_security off)."""
    functions = ours(connection, ObjectKind.DEFINER_FUNCTION)
    settings = {
        f.identity.split("(")[0]: connection.execute(
            text("SELECT proconfig FROM pg_proc WHERE oid = :oid"), {"oid": f.oid}
        ).scalar_one()
        for f in functions
    }
    assert settings == {
        "cim_monitoring.service_health_checks_add_partitions": [
            'search_path=""',
            "TimeZone=UTC",
            "lock_timeout=5s",
        ],
        "cim_monitoring.service_health_checks_drop_partitions": [
            'search_path=""',
            "TimeZone=UTC",
            "lock_timeout=2s",
            "row_security=off",
        ],
    }


def test_a_member_inserts_checks_without_any_sequence_privilege(connection: Connection) -> None:
    """An identity column needs no privilege on its sequence: none is granted to anybody."""
    role = create_role(connection, grants=False, admin=True)
    (sequence,) = ours(connection, ObjectKind.SEQUENCE)
    assert role_privileges(connection, sequence, role) == frozenset()
    connection.execute(text(f"SET LOCAL ROLE {role}"))
    connection.execute(text(insert("service_health_checks", "member")))
    with pytest.raises(ProgrammingError) as caught, connection.begin_nested():
        connection.execute(text("SELECT nextval(:s)"), {"s": sequence.identity})
    assert isinstance(caught.value.orig, pg_errors.InsufficientPrivilege)
