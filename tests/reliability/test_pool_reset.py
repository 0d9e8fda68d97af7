"""Pooled connections do not carry a role or JWT claims into the next checkout, and nothing in
the catalog (a view, a SECURITY DEFINER function) exposes the monitoring tables around RLS."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL

from cim_monitoring import Base, make_engine, make_session_factory

if TYPE_CHECKING:
    from conftest import PostgresServer

CLAIMS = json.dumps({"role": "authenticated", "app_metadata": {"role": "admin"}})
WHO = text("SELECT current_user, current_setting('request.jwt.claims', true), pg_backend_pid()")
MONITORING_TABLES = tuple(sorted(Base.metadata.tables))


@pytest.fixture
def api_role(pg_server: PostgresServer) -> Iterator[str]:
    """A committed NOLOGIN role without monitoring_admin, as an API role would be."""
    name = f"cim_test_api_{uuid.uuid4().hex[:12]}"
    pg_server.execute_admin(f"CREATE ROLE {name} NOLOGIN NOSUPERUSER NOBYPASSRLS")
    yield name
    pg_server.execute_admin(f"DROP ROLE IF EXISTS {name}")


@pytest.fixture
def single_engine(migrated_url: URL) -> Iterator[Engine]:
    engine = make_engine(migrated_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def test_next_checkout_is_back_to_the_login_role(single_engine: Engine, api_role: str) -> None:
    factory = make_session_factory(single_engine)
    with single_engine.connect() as connection:
        login_role, _, pid = connection.execute(WHO).one()

    def impersonate(*, local: bool, fail: bool) -> None:
        with factory.begin() as session:
            session.execute(text(f"SET {'LOCAL ' if local else ''}ROLE {api_role}"))
            session.execute(
                text("SELECT set_config('request.jwt.claims', :claims, :local)"),
                {"claims": CLAIMS, "local": local},
            )
            assert session.execute(WHO).one()[:2] == (api_role, CLAIMS)
            # Denied under RLS: the role really took effect inside the transaction.
            if fail:
                session.execute(text("SELECT count(*) FROM service_health_checks"))

    for fail in (False, True):
        try:
            impersonate(local=True, fail=fail)
        except Exception:
            assert fail
        with single_engine.connect() as connection:
            user, claims, next_pid = connection.execute(WHO).one()
        assert next_pid == pid, "not the same pooled connection: the test would prove nothing"
        assert user == login_role
        assert claims in (None, "")

    # Control: session-level settings would leak into the next checkout, and this test sees it.
    impersonate(local=False, fail=False)
    with single_engine.connect() as connection:
        assert connection.execute(WHO).one()[:2] == (api_role, CLAIMS)
    single_engine.dispose()  # never hand that connection to anyone


EXPOSING_VIEWS = text(
    """
    SELECT DISTINCT view.oid::regclass::text
      FROM pg_depend AS dep
      JOIN pg_rewrite AS rule ON dep.classid = 'pg_rewrite'::regclass AND dep.objid = rule.oid
      JOIN pg_class AS view ON view.oid = rule.ev_class
      JOIN pg_class AS tbl ON tbl.oid = dep.refobjid AND dep.refclassid = 'pg_class'::regclass
      JOIN pg_namespace AS ns ON ns.oid = view.relnamespace
     WHERE tbl.relname = ANY(:tables) AND view.oid <> tbl.oid
       AND ns.nspname NOT IN ('pg_catalog', 'information_schema')
    """
)
EXPOSING_FUNCTIONS = text(
    """
    SELECT p.oid::regprocedure::text
      FROM pg_proc AS p
      JOIN pg_namespace AS ns ON ns.oid = p.pronamespace
     WHERE p.prosecdef
       AND ns.nspname NOT IN ('pg_catalog', 'information_schema')
       AND ns.nspname NOT LIKE 'pg\\_%'
       AND (
            EXISTS (SELECT FROM pg_depend AS dep
                      JOIN pg_class AS tbl ON tbl.oid = dep.refobjid
                     WHERE dep.classid = 'pg_proc'::regclass AND dep.objid = p.oid
                       AND dep.refclassid = 'pg_class'::regclass
                       AND tbl.relname = ANY(:tables))
            OR EXISTS (SELECT FROM unnest(CAST(:tables AS text[])) AS t(name)
                        WHERE p.prosrc ILIKE '%' || t.name || '%')
       )
       -- The partition upkeep runs as the owner for monitoring_admin alone, who may read and
       -- delete the rows anyway.
       AND EXISTS (SELECT FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                    WHERE a.grantee <> p.proowner
                      AND a.grantee IS DISTINCT FROM to_regrole('monitoring_admin'))
    """
)


def exposures(connection: Connection) -> tuple[list[str], list[str]]:
    tables = {"tables": list(MONITORING_TABLES)}
    views = connection.execute(EXPOSING_VIEWS, tables).scalars().all()
    functions = connection.execute(EXPOSING_FUNCTIONS, tables).scalars().all()
    return list(views), list(functions)


def test_no_view_or_security_definer_function_exposes_the_tables(connection: Connection) -> None:
    assert {"service_health_checks", "alert_events"} <= set(MONITORING_TABLES)
    assert exposures(connection) == ([], [])

    # Control, rolled back with the test's transaction: both kinds of leak are detected.
    connection.execute(text("CREATE VIEW leak AS SELECT * FROM alert_events"))
    connection.execute(
        text(
            "CREATE FUNCTION leak_checks() RETURNS bigint LANGUAGE sql SECURITY DEFINER "
            "AS 'SELECT count(*) FROM public.service_health_checks'"
        )
    )
    connection.execute(
        text("CREATE FUNCTION harmless() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'")
    )
    assert exposures(connection) == (["leak"], ["leak_checks()"])
