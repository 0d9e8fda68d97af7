"""The fixture is the Supabase the issue describes: a demoted postgres, role switching by
authenticator with per-role timeouts, default privileges on everything new in public, and an
auth.jwt() that is NULL without claims. The other Supabase tests are only as good as this."""

from __future__ import annotations

import pytest
from access import ADMIN_CLAIMS, ANON, SERVICE
from conftest import SupabaseCluster, SupabaseDatabase, create_supabase_database
from postgrest_requests import Caller
from sqlalchemy import Connection, text

from cim_monitoring import DatabaseObject, ObjectKind, role_privileges


def test_postgres_is_demoted_and_bypasses_rls(sb: Connection) -> None:
    row = sb.execute(
        text(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, "
            "rolcanlogin FROM pg_roles WHERE rolname = 'postgres'"
        )
    ).one()
    assert tuple(row) == (False, True, True, True, True, True)
    # Members that inherit the three roles' privileges. (From PostgreSQL 16, postgres also holds
    # ADMIN OPTION, without inheritance, on the roles it creates, monitoring_admin among them.)
    inherits = sb.execute(
        text(
            "SELECT rolname, pg_has_role('postgres', oid, 'USAGE') FROM pg_roles "
            "WHERE rolname IN ('anon', 'authenticated', 'service_role') ORDER BY 1"
        )
    ).all()
    assert [tuple(row) for row in inherits] == [
        ("anon", True),
        ("authenticated", True),
        ("service_role", True),
    ]
    assert sb.execute(text("SELECT rolsuper FROM pg_roles WHERE oid = 10")).scalar_one()


def test_authenticator_switches_role_and_applies_its_timeout(
    supabase_db: SupabaseDatabase,
) -> None:
    who = "SELECT current_user, current_setting('statement_timeout')"
    assert supabase_db.api.request(ANON, who).rows == [("anon", "3s")]
    authenticated = Caller("authenticated", "authenticated", ADMIN_CLAIMS)
    assert supabase_db.api.request(authenticated, who).rows == [("authenticated", "8s")]
    assert supabase_db.api.request(SERVICE, who).rows == [("service_role", "0")]


def test_authenticator_holds_nothing_of_its_own(supabase_db: SupabaseDatabase) -> None:
    engine = supabase_db.engine("authenticator")
    with engine.connect() as connection:
        attributes = connection.execute(
            text("SELECT rolinherit, rolcanlogin FROM pg_roles WHERE rolname = current_user")
        ).one()
        assert tuple(attributes) == (False, True)
        with pytest.raises(Exception, match="permission denied"):
            connection.execute(text("SELECT count(*) FROM service_health_checks"))
    engine.dispose()


def test_auth_jwt_is_null_without_claims(supabase_db: SupabaseDatabase) -> None:
    caller = Caller("authenticated-no-claims", "authenticated", None)
    rows = supabase_db.api.request(caller, "SELECT auth.jwt(), auth.uid(), auth.role()").rows
    assert rows == [(None, None, None)]


def test_auth_functions_read_the_request_claims(supabase_db: SupabaseDatabase) -> None:
    claims = {"sub": "7d8f0b6e-0a4c-4a53-9e0e-0f3c2b3c8a11", "role": "authenticated"}
    caller = Caller("authenticated", "authenticated", claims)
    jwt, uid, role = supabase_db.api.request(
        caller, "SELECT auth.jwt(), auth.uid(), auth.role()"
    ).rows[0]
    assert (jwt, str(uid), role) == (claims, claims["sub"], "authenticated")


# What Supabase's default privileges (ALL) amount to, per kind.
EVERYTHING = {
    "table": {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"},
    "sequence": {"USAGE", "SELECT", "UPDATE"},
    "function": {"EXECUTE"},
}


@pytest.mark.parametrize("creator", ["postgres", "supabase_admin"])
def test_default_privileges_hand_new_objects_to_the_api_roles(
    supabase_cluster: SupabaseCluster, creator: str
) -> None:
    """Whatever postgres or supabase_admin creates in public, anon may do anything with: the
    reason every object of ours must be locked down explicitly."""
    name = f"cim_defaults_{creator}"
    create_supabase_database(supabase_cluster, name)
    engine = supabase_cluster.engine(creator, name)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE host_table (id bigint GENERATED ALWAYS AS IDENTITY)"))
        connection.execute(text("CREATE FUNCTION host_function() RETURNS int RETURN 1"))
        created = connection.execute(
            text(
                "SELECT 'table', 'host_table'::regclass::oid UNION ALL "
                "SELECT 'sequence', pg_get_serial_sequence('host_table', 'id')::regclass::oid "
                "UNION ALL SELECT 'function', 'host_function()'::regprocedure::oid"
            )
        ).all()
        assert len(created) == len(EVERYTHING)
        for kind, oid in created:
            target = DatabaseObject(ObjectKind(kind), kind, oid, creator)
            assert role_privileges(connection, target, "anon") >= EVERYTHING[kind], kind
    engine.dispose()
    supabase_cluster.execute([f"DROP DATABASE {name}"])


def test_the_cluster_listens_on_its_socket_only(sb: Connection) -> None:
    assert sb.execute(text("SHOW listen_addresses")).scalar_one() == ""
