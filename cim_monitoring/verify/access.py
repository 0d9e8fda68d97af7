"""Who may touch the tables.

What the row-level-security migration sets up: RLS enabled and forced, the policies, the
grants; and that no role beyond the intended ones can read rows or use the privileges RLS does
not police.
"""

from __future__ import annotations

from sqlalchemy import Connection, Table, text

from cim_monitoring.verify.schema import DIALECT, Problem

ADMIN_ROLE = "monitoring_admin"
POLICED_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


def admin_role(connection: Connection) -> list[Problem]:
    if connection.execute(text("SELECT to_regrole(:r)"), {"r": ADMIN_ROLE}).scalar_one():
        return []
    return [Problem(f"role {ADMIN_ROLE} is missing", f"CREATE ROLE {ADMIN_ROLE} NOLOGIN")]


def row_security(connection: Connection, oid: int, table: Table) -> list[Problem]:
    enabled, forced = connection.execute(_ROW_SECURITY, {"oid": oid}).one()
    problems = []
    if not enabled:
        problems.append(
            Problem(
                f"row level security is disabled on {table.name}",
                f"ALTER TABLE {table.name} ENABLE ROW LEVEL SECURITY",
            )
        )
    if not forced:
        problems.append(
            Problem(
                f"row level security is not forced on {table.name} (its owner bypasses it)",
                f"ALTER TABLE {table.name} FORCE ROW LEVEL SECURITY",
            )
        )
    return problems


def policies(connection: Connection, table: Table) -> list[Problem]:
    found = {row.name: row for row in connection.execute(_POLICIES, {"table": table.name})}
    expected = [(f"{table.name}_admin_all", ADMIN_ROLE, _ADMIN_POLICY)]
    if connection.execute(_SUPABASE_AUTH).scalar_one():
        expected.append((f"{table.name}_jwt_admin", "authenticated", _JWT_POLICY))
    problems = []
    for name, role, template in expected:
        ddl = template.format(name=name, table=table.name)
        row = found.get(name)
        if row is None:
            problems.append(Problem(f"policy {name} on {table.name} is missing", ddl))
        elif (row.roles, row.cmd, row.permissive) != ([role], "ALL", "PERMISSIVE") or (
            role == ADMIN_ROLE and (row.qual, row.with_check) != ("true", "true")
        ):
            problems.append(
                Problem(
                    f"policy {name} on {table.name} is not the one the migration created",
                    f"DROP POLICY {name} ON {table.name}; {ddl}",
                )
            )
    return problems


def grants(connection: Connection, oid: int, table: Table) -> list[Problem]:
    row = connection.execute(_GRANTS, {"oid": oid, "admin": ADMIN_ROLE}).one()
    problems = []
    if row.admin_missing:
        problems.append(
            Problem(
                f"{ADMIN_ROLE} lacks {', '.join(row.admin_missing)} on {table.name}",
                f"GRANT {', '.join(POLICED_PRIVILEGES)} ON {table.name} TO {ADMIN_ROLE}",
            )
        )
    for role, privileges in (("PUBLIC", row.public), ("anon", row.anon)):
        if privileges:
            problems.append(
                Problem(
                    f"{role} holds {', '.join(privileges)} on {table.name}",
                    f"REVOKE ALL ON {table.name} FROM {role}",
                )
            )
    for holder in connection.execute(_UNPOLICED, {"oid": oid}):
        privileges = ", ".join(holder.privileges)
        problems.append(
            Problem(
                f"role {holder.role} holds {privileges} on {table.name}, which RLS does not police",
                f"REVOKE {privileges} ON {table.name} FROM {_quote(holder.role)}",
            )
        )
    return problems


def readers(connection: Connection, oid: int, table: Table) -> list[Problem]:
    """Roles that a permissive policy lets read, other than the ones that are meant to."""
    problems = []
    for reader in connection.execute(_READERS, {"oid": oid, "admin": ADMIN_ROLE}):
        revoke = f"REVOKE SELECT ON {table.name} FROM {_quote(reader.role)}"  # noqa: S608 - advice
        if not reader.policies:
            problems.append(
                Problem(
                    f"role {reader.role} can read {table.name}: row level security is off",
                    f"ALTER TABLE {table.name} ENABLE ROW LEVEL SECURITY, or {revoke}",
                )
            )
        # The JWT policy lets `authenticated` in only with an admin claim: that is the design.
        elif not set(reader.policies) <= {f"{table.name}_jwt_admin"}:
            via = ", ".join(reader.policies)
            problems.append(
                Problem(
                    f"role {reader.role} can read {table.name} (policy {via})",
                    f"{revoke}, or drop or narrow policy {via}",
                )
            )
    return problems


def _quote(identifier: str) -> str:
    """Quote a role name for the printed fix when SQL needs it (mixed case, spaces, ...)."""
    return str(DIALECT.identifier_preparer.quote(identifier))


_ROW_SECURITY = text("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = :oid")
_POLICIES = text(
    """
    SELECT policyname AS name, roles::text[] AS roles, cmd, permissive, qual, with_check
      FROM pg_policies WHERE schemaname = current_schema() AND tablename = :table
    """
)
_SUPABASE_AUTH = text(
    "SELECT to_regprocedure('auth.jwt()') IS NOT NULL AND to_regrole('authenticated') IS NOT NULL"
)
_ADMIN_POLICY = (
    f"CREATE POLICY {{name}} ON {{table}} FOR ALL TO {ADMIN_ROLE} USING (true) WITH CHECK (true)"
)
_JWT_CLAIM = "coalesce((SELECT auth.jwt()) -> 'app_metadata' ->> 'role', '') = 'admin'"
_JWT_POLICY = (
    f"CREATE POLICY {{name}} ON {{table}} FOR ALL TO authenticated USING ({_JWT_CLAIM}) "
    f"WITH CHECK ({_JWT_CLAIM})"
)
_GRANTS = text(
    """
    SELECT
      ARRAY(SELECT p FROM unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE']) AS p
             WHERE to_regrole(:admin) IS NOT NULL
               AND NOT has_table_privilege(to_regrole(:admin), :oid, p)) AS admin_missing,
      ARRAY(SELECT DISTINCT a.privilege_type
              FROM pg_class c, aclexplode(c.relacl) AS a
             WHERE c.oid = :oid AND a.grantee = 0 ORDER BY 1) AS public,
      ARRAY(SELECT p FROM unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE',
                                       'REFERENCES','TRIGGER']) AS p
             WHERE to_regrole('anon') IS NOT NULL
               AND has_table_privilege(to_regrole('anon'), :oid, p)) AS anon
    """
)
# TRUNCATE empties a table whatever the policies say; REFERENCES and TRIGGER leak rows too.
_UNPOLICED = text(
    """
    SELECT r.rolname AS role, array_agg(p ORDER BY p) AS privileges
      FROM pg_roles r, pg_class c, unnest(ARRAY['TRUNCATE','REFERENCES','TRIGGER']) AS p
     WHERE c.oid = :oid AND has_table_privilege(r.oid, c.oid, p)
       AND NOT r.rolsuper AND NOT pg_has_role(r.oid, c.relowner, 'MEMBER')
     GROUP BY r.rolname ORDER BY r.rolname
    """
)
# A role reads rows when it holds SELECT and either RLS is off or a permissive SELECT/ALL policy
# applies to it (directly, through membership, or to PUBLIC). Superusers, BYPASSRLS roles, the
# owner (held to the policies by FORCE, but free to change them) and monitoring_admin's members
# are meant to; built-in pg_* roles are NOLOGIN, and their members are listed themselves.
_READERS = text(
    """
    SELECT r.rolname AS role,
           array_remove(array_agg(DISTINCT pol.polname::text), NULL) AS policies
      FROM pg_roles r
      JOIN pg_class c ON c.oid = :oid
      LEFT JOIN pg_policy pol
             ON pol.polrelid = c.oid AND pol.polpermissive AND pol.polcmd IN ('*', 'r')
            AND (0 = ANY (pol.polroles)
                 OR EXISTS (SELECT 1 FROM unnest(pol.polroles) AS target(oid)
                             WHERE pg_has_role(r.oid, target.oid, 'MEMBER')))
     WHERE has_table_privilege(r.oid, c.oid, 'SELECT') AND r.rolname !~ '^pg_'
       AND NOT r.rolsuper AND NOT r.rolbypassrls
       AND NOT pg_has_role(r.oid, c.relowner, 'MEMBER')
       AND NOT coalesce(pg_has_role(r.oid, to_regrole(:admin), 'MEMBER'), false)
     GROUP BY r.rolname, c.relrowsecurity
    HAVING NOT c.relrowsecurity OR count(pol.polname) > 0
     ORDER BY r.rolname
    """
)
