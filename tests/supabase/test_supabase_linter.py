"""The conditions of Supabase's database linter (the Security and Performance Advisors) that
concern our objects, written as our own SQL from the lints' descriptions: a Supabase user's
advisors must show nothing about cim-monitoring.

Each query lists offenders among the objects in ``public`` (what PostgREST exposes) and
``cim_monitoring``; each test expects none. GraphQL visibility of the admin-readable tables to
signed-in users (lint 0027) is a documented decision, see the README.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

OURS = "n.nspname IN ('public', 'cim_monitoring')"
# Functions an extension installed are the extension's business, not ours.
NOT_AN_EXTENSION = (
    "NOT EXISTS (SELECT FROM pg_depend AS d WHERE d.classid = 'pg_proc'::regclass "
    "AND d.objid = p.oid AND d.deptype = 'e')"
)
FUNCTIONS = f"pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace WHERE {OURS}"
TABLES = (
    "pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
    f"WHERE {OURS} AND c.relkind IN ('r', 'p')"
)
POLICIES = (
    "pg_policy AS pol JOIN pg_class AS c ON c.oid = pol.polrelid "
    f"JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE {OURS}"
)
USING = "coalesce(pg_get_expr(pol.polqual, pol.polrelid), '')"
CHECK = "coalesce(pg_get_expr(pol.polwithcheck, pol.polrelid), '')"
API_ROLES = "ARRAY[0, to_regrole('anon'), to_regrole('authenticated')]::oid[]"


def offenders(connection: Connection, query: str) -> list[str]:
    return list(connection.execute(text(query)).scalars())


def test_function_search_path_mutable(sb: Connection) -> None:
    """Every function pins its search_path (ours, to the empty one)."""
    mutable = f"""
        SELECT p.oid::regprocedure::text FROM {FUNCTIONS} AND {NOT_AN_EXTENSION}
           AND NOT EXISTS (SELECT FROM unnest(p.proconfig) AS c WHERE c LIKE 'search_path=%')
    """
    assert offenders(sb, mutable) == []
    not_empty = f"""
        SELECT p.oid::regprocedure::text FROM {FUNCTIONS}
           AND NOT 'search_path=""' = ANY(coalesce(p.proconfig, '{{}}'))
    """
    assert offenders(sb, not_empty) == []


def test_security_definer_functions_not_executable_by_api_roles(sb: Connection) -> None:
    executable = f"""
        SELECT p.oid::regprocedure::text FROM {FUNCTIONS} AND p.prosecdef
           AND (has_function_privilege('anon', p.oid, 'EXECUTE')
                OR has_function_privilege('authenticated', p.oid, 'EXECUTE'))
    """
    assert offenders(sb, executable) == []


def test_rls_disabled_in_public(sb: Connection) -> None:
    assert offenders(sb, f"SELECT c.relname FROM {TABLES} AND NOT c.relrowsecurity") == []


def test_policy_exists_rls_disabled(sb: Connection) -> None:
    query = f"SELECT DISTINCT c.relname FROM {POLICIES} AND NOT c.relrowsecurity"
    assert offenders(sb, query) == []


NO_POLICY = (
    "SELECT c.relname FROM {tables} AND c.relrowsecurity "
    "AND NOT EXISTS (SELECT FROM pg_policy AS pol WHERE pol.polrelid = c.oid)"
)


def test_rls_enabled_no_policy(sb: Connection) -> None:
    """Every table of ours, the version table included (its read policy for monitoring_admin)."""
    assert offenders(sb, NO_POLICY.format(tables=TABLES)) == []


def test_rls_references_user_metadata(sb: Connection) -> None:
    query = f"""
        SELECT pol.polname FROM {POLICIES}
           AND ({USING} ILIKE '%user_metadata%' OR {CHECK} ILIKE '%user_metadata%')
    """
    assert offenders(sb, query) == []


def test_permissive_always_true_policy_for_api_roles(sb: Connection) -> None:
    query = f"""
        SELECT pol.polname FROM {POLICIES} AND pol.polpermissive
           AND pol.polroles && {API_ROLES} AND ({USING} = 'true' OR {CHECK} = 'true')
    """
    assert offenders(sb, query) == []


def test_auth_rls_initplan(sb: Connection) -> None:
    """auth.<function>() and current_setting() in a policy run once per statement only inside
    a sub-select; bare, they run once per row."""
    calls = r"'(auth\.[a-z_]+|current_setting)\('"
    wrapped = r"'SELECT (auth\.[a-z_]+|current_setting)\('"
    query = f"""
        SELECT pol.polname FROM {POLICIES}
           AND (SELECT count(*) FROM regexp_matches({USING} || ' ' || {CHECK}, {calls}, 'g'))
             > (SELECT count(*) FROM regexp_matches({USING} || ' ' || {CHECK}, {wrapped}, 'g'))
    """
    assert offenders(sb, query) == []


def test_multiple_permissive_policies(sb: Connection) -> None:
    """At most one permissive policy per table, role and action (each one is evaluated)."""
    query = f"""
        SELECT c.relname || ' ' || r.role::text || ' ' || a.action
          FROM pg_policy AS pol
          JOIN pg_class AS c ON c.oid = pol.polrelid
          JOIN pg_namespace AS n ON n.oid = c.relnamespace
         CROSS JOIN unnest(pol.polroles) AS r(role)
         CROSS JOIN unnest(CASE pol.polcmd WHEN '*' THEN ARRAY['r', 'a', 'w', 'd']
                           ELSE ARRAY[pol.polcmd::text] END) AS a(action)
         WHERE {OURS} AND pol.polpermissive
         GROUP BY c.relname, r.role, a.action HAVING count(*) > 1
    """
    assert offenders(sb, query) == []
