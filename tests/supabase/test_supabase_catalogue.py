"""Every object of ours, as the catalogue lists it, ends with exactly the documented privileges
for every role of the Supabase cluster and for PUBLIC, whoever migrated; and the listing itself
misses nothing that sits in ``public`` or ``cim_monitoring``."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from access import ROLES, documented
from catalog import schema_contents
from conftest import APP_ROLE, SupabaseDatabase
from sqlalchemy import Connection, text

from cim_monitoring import DatabaseObject, ObjectKind, owned_objects, role_privileges
from cim_monitoring.partitions import add_partitions

SCHEMAS = ["public", "cim_monitoring"]


@pytest.fixture
def objects(sb: Connection) -> list[DatabaseObject]:
    return owned_objects(sb)


def test_every_kind_we_create_is_listed(objects: list[DatabaseObject]) -> None:
    """Not vacuous: tables, the partitions of the checks, their identity sequence, helpers,
    trigger functions, the partition upkeep, the schema and the version table are all there to
    be probed."""
    assert {o.kind for o in objects} == {
        ObjectKind.SCHEMA,
        ObjectKind.TABLE,
        ObjectKind.PARTITION,
        ObjectKind.SEQUENCE,
        ObjectKind.FUNCTION,
        ObjectKind.TRIGGER_FUNCTION,
        ObjectKind.DEFINER_FUNCTION,
        ObjectKind.VERSION_TABLE,
    }


def test_the_listing_misses_nothing_in_our_schemas(
    sb: Connection, objects: list[DatabaseObject]
) -> None:
    """The fixture's public and cim_monitoring hold only what the migrations created."""
    listed = {o.identity for o in objects}
    assert schema_contents(sb, SCHEMAS) - listed == set()


def test_the_listing_notices_a_new_object(sb: Connection) -> None:
    """Control: a view, a sequence or a function a later revision might add is found."""
    before = {o.identity for o in owned_objects(sb)}
    sb.execute(text("CREATE VIEW cim_monitoring.later_view AS SELECT 1 AS one"))
    sb.execute(text("CREATE SEQUENCE cim_monitoring.later_sequence"))
    sb.execute(text("CREATE FUNCTION cim_monitoring.later_function() RETURNS int RETURN 1"))
    sb.execute(text("CREATE TABLE service_health_checks_2030 (LIKE service_health_checks)"))
    after = {o.identity for o in owned_objects(sb)}
    assert after - before == {
        "cim_monitoring.later_view",
        "cim_monitoring.later_sequence",
        "cim_monitoring.later_function()",
    }
    # An unrelated table is not ours, and the completeness check says so.
    assert "service_health_checks_2030" in schema_contents(sb, SCHEMAS) - after


def test_the_roles_are_the_documented_ones(sb: Connection, supabase_db: SupabaseDatabase) -> None:
    """Every role that could hold a privilege is in the documented table (or is the owner)."""
    assert set(_probed_roles(sb, supabase_db.migrator)) == set(ROLES) - {supabase_db.migrator}


def test_every_role_holds_exactly_the_documented_privileges(
    sb: Connection, supabase_db: SupabaseDatabase, objects: list[DatabaseObject]
) -> None:
    roles = [*_probed_roles(sb, supabase_db.migrator), "PUBLIC"]
    found = {
        (role, o.kind, o.identity): role_privileges(sb, o, role) for role in roles for o in objects
    }
    expected = {
        (role, o.kind, o.identity): documented(o.kind, role) if role != "PUBLIC" else frozenset()
        for role in roles
        for o in objects
    }
    wrong = {key: sorted(found[key]) for key in found if found[key] != expected[key]}
    assert wrong == {}


def _probed_roles(connection: Connection, owner: str) -> list[str]:
    """Every role but superusers, PostgreSQL's built-in ones and the owner of our objects."""
    return list(
        connection.execute(
            text(
                "SELECT rolname FROM pg_roles WHERE NOT rolsuper AND rolname !~ '^pg_' "
                "AND rolname <> :owner ORDER BY 1"
            ),
            {"owner": owner},
        ).scalars()
    )


def test_policies(sb: Connection, objects: list[DatabaseObject]) -> None:
    """Each monitoring table and each partition: monitoring_admin's policy, and the admin-claim
    policy for authenticated, which reads app_metadata (set by the server), never
    user_metadata. A partition's policies carry its parent's names."""
    tables = sorted(o.identity for o in objects if o.kind == ObjectKind.TABLE)
    partitions = sorted(o.identity for o in objects if o.kind == ObjectKind.PARTITION)
    policies = sb.execute(
        text(
            "SELECT tablename, policyname, roles::text[], cmd, qual, with_check FROM pg_policies "
            "WHERE tablename = ANY(:tables) ORDER BY tablename, policyname"
        ),
        {"tables": tables + partitions},
    ).all()
    named = [(t, t) for t in tables] + [(p, "service_health_checks") for p in partitions]
    assert [(p.tablename, p.policyname, p.roles, p.cmd) for p in policies] == sorted(
        (t, f"{parent}_{suffix}", [role], "ALL")
        for t, parent in named
        for suffix, role in [("admin_all", "monitoring_admin"), ("jwt_admin", "authenticated")]
    )
    for policy in policies:
        if policy.policyname.endswith("_jwt_admin"):
            for expression in (policy.qual, policy.with_check):
                assert "'app_metadata'" in expression


def test_partitions_made_later_by_the_app_role_are_locked_down(
    supabase_db: SupabaseDatabase,
) -> None:
    """The production role (a member of monitoring_admin, not the owner) makes partitions of
    days to come: Supabase's default privileges grant each new table to the API roles, the
    upkeep takes that back and gives each exactly its parent's protection."""
    engine = supabase_db.engine(APP_ROLE)
    with engine.connect() as app, app.begin() as transaction:
        before = {o.identity for o in owned_objects(app)}
        made = add_partitions(app, date.today() + timedelta(days=40), days_ahead=2)
        new = [o for o in owned_objects(app) if o.identity not in before]
        assert made == len(new) == 3
        assert {o.kind for o in new} == {ObjectKind.PARTITION}
        assert {o.owner for o in new} == {supabase_db.migrator}
        roles = [*_probed_roles(app, supabase_db.migrator), "PUBLIC"]
        wrong = {
            (role, o.identity): sorted(held)
            for role in roles
            for o in new
            if (held := role_privileges(app, o, role))
            != (documented(o.kind, role) if role != "PUBLIC" else frozenset())
        }
        assert wrong == {}
        protection = app.execute(
            text(
                "SELECT c.relrowsecurity AND c.relforcerowsecurity, "
                "array_agg(p.polname ORDER BY p.polname) FROM pg_class AS c "
                "JOIN pg_policy AS p ON p.polrelid = c.oid WHERE c.oid = ANY(:oids) GROUP BY c.oid"
            ),
            {"oids": [o.oid for o in new]},
        ).all()
        policies = ["service_health_checks_admin_all", "service_health_checks_jwt_admin"]
        assert protection == [(True, policies)] * 3
        transaction.rollback()
    engine.dispose()
