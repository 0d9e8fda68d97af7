"""The defects issue #10 found on Supabase, each replayed as it was found. Every test here fails
on the history before revision d9f3b7a2c5e1, but for the control where postgres owns the tables
and may truncate them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from access import ADMIN, ANON, NOT_ADMINS, SERVICE
from catalog import ours
from conftest import APP_ROLE, SupabaseDatabase
from documented import POLICED
from postgrest_requests import Caller
from psycopg import errors as pg_errors
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from cim_monitoring import ObjectKind, role_privileges

DENSE = "service_health_dense_histogram"
# The body of the request: one bucket index far past the histogram's end.
HUGE_BUCKET = {"buckets": [100_000_000], "counts": [1]}
RPC = (
    f"SELECT public.{DENSE}(buckets := CAST(%(buckets)s AS integer[]), "
    "counts := CAST(%(counts)s AS integer[]))"
)
INSERT_CHECK = (
    "INSERT INTO service_health_checks (service_name, status) VALUES ('defect-2', 'healthy') "
    "RETURNING id"
)


@pytest.fixture
def app(supabase_db: SupabaseDatabase) -> Iterator[Connection]:
    """The application's own login role, a member of monitoring_admin, in a transaction rolled
    back afterwards."""
    engine = supabase_db.engine(APP_ROLE)
    with engine.connect() as connection, connection.begin() as transaction:
        yield connection
        transaction.rollback()
    engine.dispose()


# (1) Unauthenticated memory exhaustion through /rpc/service_health_dense_histogram.


@pytest.mark.parametrize("caller", [ANON, NOT_ADMINS[0]], ids=["anon", "authenticated"])
def test_rpc_of_the_dense_histogram_is_refused(
    supabase_db: SupabaseDatabase, caller: Caller
) -> None:
    """PostgREST finds no such function in the exposed schema (a 404), so nothing is
    allocated."""
    with pytest.raises(pg_errors.UndefinedFunction):
        supabase_db.api.request(caller, RPC, HUGE_BUCKET)


def test_anon_cannot_reach_the_private_helpers(supabase_db: SupabaseDatabase) -> None:
    call = f"SELECT cim_monitoring.{DENSE}(CAST(%(buckets)s AS integer[]), %(counts)s)"
    with pytest.raises(pg_errors.InsufficientPrivilege, match="schema cim_monitoring"):
        supabase_db.api.request(ANON, call, HUGE_BUCKET)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ("ARRAY[100000000], ARRAY[1]", pg_errors.ArraySubscriptError),
        ("ARRAY[0], ARRAY[1]", pg_errors.ArraySubscriptError),
        ("ARRAY[107], ARRAY[1]", pg_errors.ArraySubscriptError),
        ("ARRAY[NULL::int], ARRAY[1]", pg_errors.ArraySubscriptError),
        ("ARRAY[1, 2], ARRAY[1]", pg_errors.InvalidParameterValue),
        ("CAST(array_fill(1, ARRAY[107]) AS int[]), array_fill(1, ARRAY[107])",
         pg_errors.InvalidParameterValue),
    ],
    ids=["issue-body", "zero", "past-the-end", "null", "unequal", "too-many"],
)  # fmt: skip
def test_even_a_permitted_caller_cannot_make_the_helper_allocate(
    app: Connection, arguments: str, error: type[Exception]
) -> None:
    with pytest.raises(DBAPIError) as caught:
        app.execute(text(f"SELECT cim_monitoring.{DENSE}({arguments})"))
    assert isinstance(caught.value.orig, error)


@pytest.mark.parametrize(
    "arguments",
    ["ARRAY[1], ARRAY[1]", "array_fill(0, ARRAY[106]), array_fill(0, ARRAY[107])"],
    ids=["short", "unequal"],
)
def test_the_histogram_sum_refuses_anything_but_two_histograms(
    app: Connection, arguments: str
) -> None:
    with pytest.raises(DBAPIError) as caught:
        app.execute(text(f"SELECT cim_monitoring.service_health_histogram_sum({arguments})"))
    assert isinstance(caught.value.orig, pg_errors.InvalidParameterValue)


def test_the_helpers_still_build_and_add_histograms(app: Connection) -> None:
    dense = app.execute(
        text(f"SELECT cim_monitoring.{DENSE}(ARRAY[1, 106], ARRAY[3, 4])")
    ).scalar_one()
    assert (len(dense), dense[0], dense[105], sum(dense)) == (106, 3, 4, 7)
    total = app.execute(
        text("SELECT cim_monitoring.service_health_histogram_sum(:h, :h)"), {"h": dense}
    ).scalar_one()
    assert total == [2 * count for count in dense]


# (2) The identity sequence was writable by anon and authenticated.


@pytest.mark.parametrize(
    "caller", [ANON, ADMIN, NOT_ADMINS[-1]], ids=["anon", "admin-claim", "no-claims"]
)
@pytest.mark.parametrize("call", ["setval(%(s)s, 9223372036854775807)", "nextval(%(s)s)"])
def test_the_sequences_refuse_the_api_roles(
    sb: Connection, supabase_db: SupabaseDatabase, caller: Caller, call: str
) -> None:
    for sequence in ours(sb, ObjectKind.SEQUENCE):
        with pytest.raises(pg_errors.InsufficientPrivilege):
            supabase_db.api.request(caller, f"SELECT {call}", {"s": sequence.identity})


@pytest.mark.parametrize("caller", [ADMIN, SERVICE], ids=["admin-claim", "service_role"])
def test_api_roles_insert_checks_without_any_sequence_privilege(
    sb: Connection, supabase_db: SupabaseDatabase, caller: Caller
) -> None:
    (sequence,) = ours(sb, ObjectKind.SEQUENCE)
    assert role_privileges(sb, sequence, caller.role) == frozenset()
    (inserted,) = supabase_db.api.request(caller, INSERT_CHECK).rows
    assert inserted[0] > 0


def test_the_application_inserts_checks_without_any_sequence_privilege(
    sb: Connection, app: Connection
) -> None:
    (sequence,) = ours(sb, ObjectKind.SEQUENCE)
    assert role_privileges(sb, sequence, APP_ROLE) == frozenset()
    assert app.execute(text(INSERT_CHECK)).scalar_one() > 0


# (3) service_role, and postgres when it does not own the tables, held TRUNCATE, REFERENCES and
# TRIGGER, which row level security does not police.


def _non_owners(supabase_db: SupabaseDatabase) -> list[str]:
    return ["service_role", *(["postgres"] if supabase_db.migrator != "postgres" else [])]


def test_service_role_and_postgres_hold_exactly_the_policed_privileges(
    sb: Connection, supabase_db: SupabaseDatabase
) -> None:
    tables = ours(sb, ObjectKind.TABLE)
    held = {
        (role, t.identity): role_privileges(sb, t, role)
        for role in _non_owners(supabase_db)
        for t in tables
    }
    assert held == dict.fromkeys(held, POLICED)


def test_postgres_cannot_truncate_what_it_does_not_own(supabase_db: SupabaseDatabase) -> None:
    engine = supabase_db.engine("postgres")
    with engine.connect() as connection, connection.begin() as transaction:
        for table in ("service_health_checks", "alert_events"):
            if supabase_db.migrator == "postgres":
                connection.execute(text(f"TRUNCATE {table}"))  # the owner may; control
            else:
                with pytest.raises(DBAPIError) as caught, connection.begin_nested():
                    connection.execute(text(f"TRUNCATE {table}"))
                assert isinstance(caught.value.orig, pg_errors.InsufficientPrivilege)
        transaction.rollback()
    engine.dispose()
