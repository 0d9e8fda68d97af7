"""Every table and function of ours, as the catalogue lists them, requested through PostgREST as
anon, signed-in users with and without the admin claim (user_metadata tricks included) and
service_role: each gets exactly what the README documents."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from access import ADMIN, CALLERS, NOT_ADMINS, READS_ALL, SERVICE, documented
from catalog import ours
from conftest import SupabaseDatabase
from postgrest_requests import EXPOSED_SCHEMA, Caller, Response
from psycopg import errors as pg_errors
from samples import insert
from sqlalchemy import Connection, text

from cim_monitoring import DatabaseObject, ObjectKind
from cim_monitoring.partitions import DAYS_AHEAD

TABLE_KINDS = {ObjectKind.TABLE, ObjectKind.PARTITION}
FUNCTION_KINDS = {
    ObjectKind.FUNCTION,
    ObjectKind.TRIGGER_FUNCTION,
    ObjectKind.DEFINER_FUNCTION,
}
by_name = pytest.mark.parametrize("caller", CALLERS, ids=[c.name for c in CALLERS])


def _refused(request: Callable[[], Response]) -> str:
    with pytest.raises(pg_errors.InsufficientPrivilege) as caught:
        request()
    return str(caught.value)


@by_name
def test_tables(sb: Connection, supabase_db: SupabaseDatabase, caller: Caller) -> None:
    """anon is refused outright; a signed-in user without the admin claim sees no row and can
    write none; the admin claim and service_role read and write everything."""
    api = supabase_db.api
    for table in ours(sb, ObjectKind.TABLE):
        name = table.identity
        rows = sb.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()
        assert rows > 0, name
        count, delete = f"SELECT count(*) FROM {name}", f"DELETE FROM {name}"
        update = f"UPDATE {name} SET service_name = service_name"
        if documented(table.kind, caller.role) == frozenset():
            for sql in (count, update, delete, insert(name, "probe")):
                _refused(lambda sql=sql: api.request(caller, sql))
        elif caller.name in READS_ALL:
            assert api.request(caller, count).rows == [(rows,)], name
            assert api.request(caller, insert(name, "probe")).rowcount == 1, name
            assert api.request(caller, delete).rowcount == rows, name
            if name == "service_health_checks":  # append-only
                with pytest.raises(pg_errors.RestrictViolation):
                    api.request(caller, update)
            else:
                assert api.request(caller, update).rowcount == rows, name
        else:
            assert api.request(caller, count).rows == [(0,)], name
            assert api.request(caller, update).rowcount == 0, name
            assert api.request(caller, delete).rowcount == 0, name
            message = _refused(lambda name=name: api.request(caller, insert(name, "probe")))
            assert "row-level security" in message, name


@by_name
def test_partitions(sb: Connection, supabase_db: SupabaseDatabase, caller: Caller) -> None:
    """Read straight, every partition (the ones made ahead and the default included) answers as
    its parent: anon is refused, a user without the admin claim sees no row of it, the admin
    claim and service_role see them all."""
    partitions = ours(sb, ObjectKind.PARTITION)
    assert any(p.identity.endswith("_default") for p in partitions)
    assert len(partitions) >= 1 + 1 + DAYS_AHEAD
    for partition in partitions:
        rows = sb.execute(text(f"SELECT count(*) FROM {partition.identity}")).scalar_one()
        count = f"SELECT count(*) FROM {partition.identity}"
        if documented(partition.kind, caller.role) == frozenset():
            _refused(lambda count=count: supabase_db.api.request(caller, count))
        else:
            seen = rows if caller.name in READS_ALL else 0
            assert supabase_db.api.request(caller, count).rows == [(seen,)], partition.identity


@by_name
def test_nobody_truncates(sb: Connection, supabase_db: SupabaseDatabase, caller: Caller) -> None:
    """TRUNCATE empties a table whatever the policies say: no API role holds it, service_role
    included."""
    for table in ours(sb, *TABLE_KINDS, ObjectKind.VERSION_TABLE):
        _refused(lambda table=table: supabase_db.api.request(caller, f"TRUNCATE {table.identity}"))


@by_name
def test_version_table_is_hidden(
    sb: Connection, supabase_db: SupabaseDatabase, caller: Caller
) -> None:
    for table in ours(sb, ObjectKind.VERSION_TABLE):
        sql = f"SELECT * FROM {table.identity}"
        _refused(lambda sql=sql: supabase_db.api.request(caller, sql))


def _call(function: DatabaseObject, sb: Connection, schema: str | None = None) -> str:
    """``SELECT schema.f(NULL::t1, ...)``: PostgREST's /rpc/f resolves f in the exposed schema."""
    name, types = sb.execute(
        text("SELECT proname, oidvectortypes(proargtypes) FROM pg_proc WHERE oid = :oid"),
        {"oid": function.oid},
    ).one()
    arguments = ", ".join(f"NULL::{t}" for t in types.split(", ") if t)
    qualified = f"{schema}.{name}" if schema else function.identity.split("(")[0]
    return f"SELECT {qualified}({arguments})"


@by_name
def test_no_function_of_ours_is_an_rpc_endpoint(
    sb: Connection, supabase_db: SupabaseDatabase, caller: Caller
) -> None:
    for function in ours(sb, *FUNCTION_KINDS):
        rpc = _call(function, sb, EXPOSED_SCHEMA)
        with pytest.raises(pg_errors.UndefinedFunction):
            supabase_db.api.request(caller, rpc)


@by_name
def test_functions_run_only_for_the_documented_roles(
    sb: Connection, supabase_db: SupabaseDatabase, caller: Caller
) -> None:
    """Called by their own name (not possible through PostgREST, but through SQL as any of these
    roles): the helpers for the admin side, the trigger functions for nobody."""
    for function in ours(sb, *FUNCTION_KINDS):
        call = _call(function, sb)
        may = "EXECUTE" in documented(function.kind, caller.role)
        assert _lacks_privilege(lambda call=call: supabase_db.api.request(caller, call)) != may


def _lacks_privilege(request: Callable[[], Response]) -> bool:
    """Whether ``request`` is refused for want of a privilege (a function that ran and then
    refused its arguments, as the helpers refuse NULL histograms, was not)."""
    try:
        request()
    except pg_errors.InsufficientPrivilege:
        return True
    except psycopg.Error:
        return False
    return False


def test_rollups_follow_the_checks_for_an_admin_claim_only(supabase_db: SupabaseDatabase) -> None:
    """The rollup trigger runs as the inserting role: through it an admin claim writes the
    rollups it may write directly too, and without the claim they stay invisible."""
    api = supabase_db.api
    service = f"by-admin-claim-{supabase_db.migrator}"
    insert = (
        "INSERT INTO service_health_checks (service_name, status, latency_ms) "
        "VALUES (%s, 'down', 7)"
    )
    rollups = "SELECT count(*) FROM service_health_hourly WHERE service_name = %s"
    api.request(ADMIN, insert, (service,), commit=True)
    try:
        assert api.request(ADMIN, rollups, (service,)).rows == [(1,)]
        assert api.request(NOT_ADMINS[0], rollups, (service,)).rows == [(0,)]
    finally:
        for table in (
            "service_health_checks",
            "service_health_hourly",
            "service_health_daily",
            "service_health_state",
            "service_health_changes",
        ):
            delete = f"DELETE FROM {table} WHERE service_name = %s"
            api.request(SERVICE, delete, (service,), commit=True)
