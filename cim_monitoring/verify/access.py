"""Who may touch the tables.

What the row-level-security migration sets up: RLS enabled and forced, the policies, the
grants; and that no role beyond the intended ones can read rows or use the privileges RLS does
not police.
"""

from __future__ import annotations

from sqlalchemy import Connection, Table, text

from cim_monitoring.objects import FUNCTION_SCHEMA, VERSION_TABLE, ObjectKind, owned_objects
from cim_monitoring.verify.schema import DIALECT, Problem

ADMIN_ROLE = "monitoring_admin"
POLICED_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


def admin_role(connection: Connection) -> list[Problem]:
    if connection.execute(text("SELECT to_regrole(:r)"), {"r": ADMIN_ROLE}).scalar_one():
        return []
    return [Problem(f"role {ADMIN_ROLE} is missing", f"CREATE ROLE {ADMIN_ROLE} NOLOGIN")]


def functions(connection: Connection) -> list[Problem]:
    """Our functions: nobody outside may run them, and none follows the caller's search_path."""
    problems = []
    for row in connection.execute(_FUNCTIONS, {"schema": FUNCTION_SCHEMA}):
        if row.open_to:
            grantees = ", ".join(row.open_to)
            problems.append(
                Problem(
                    f"{grantees} may execute {row.identity}",
                    f"REVOKE EXECUTE ON FUNCTION {row.identity} FROM {grantees}",
                )
            )
        if not row.pinned:
            problems.append(
                Problem(
                    f"{row.identity} does not pin search_path to ''",
                    f"ALTER FUNCTION {row.identity} SET search_path = ''",
                )
            )
    return problems


def sequences(connection: Connection) -> list[Problem]:
    """Our sequences: no privilege for anybody but the owner (identity columns need none)."""
    oids = [o.oid for o in owned_objects(connection) if o.kind is ObjectKind.SEQUENCE]
    return [
        Problem(
            f"{row.grantee} holds {', '.join(row.privileges)} on sequence {row.identity}",
            f"REVOKE ALL ON SEQUENCE {row.identity} FROM {row.grantee}",
        )
        for row in connection.execute(_SEQUENCE_GRANTS, {"oids": oids})
    ]


def function_schema(connection: Connection) -> list[Problem]:
    """The private schema: nobody but its owner creates in it; PUBLIC and anon do not use it."""
    return [
        Problem(
            f"{row.grantee} holds {row.privilege} on schema {FUNCTION_SCHEMA}",
            f"REVOKE {row.privilege} ON SCHEMA {FUNCTION_SCHEMA} FROM {row.grantee}",
        )
        for row in connection.execute(_SCHEMA_GRANTS, {"schema": FUNCTION_SCHEMA})
    ]


def version_table(connection: Connection) -> list[Problem]:
    """Our version table: RLS enabled (not forced: whoever migrates writes it), so only its
    read policy lets anyone but the owner see it; PUBLIC and anon hold nothing on it."""
    row = connection.execute(_VERSION_TABLE, {"table": VERSION_TABLE}).one_or_none()
    if row is None:  # not migrated yet: the revision check says so
        return []
    problems = []
    if not row.enabled:
        problems.append(
            Problem(
                f"row level security is disabled on {VERSION_TABLE}",
                f"ALTER TABLE {VERSION_TABLE} ENABLE ROW LEVEL SECURITY",
            )
        )
    problems.extend(
        Problem(
            f"{grantee} holds {privileges} on {VERSION_TABLE}",
            f"REVOKE ALL ON {VERSION_TABLE} FROM {grantee}",
        )
        for grantee, privileges in row.exposed
    )
    return problems


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


# A NULL ACL means the defaults: EXECUTE for PUBLIC on a function.
_FUNCTIONS = text(
    """
    SELECT p.oid::regprocedure::text AS identity,
           coalesce('search_path=""' = ANY (p.proconfig), false) AS pinned,
           ARRAY(SELECT DISTINCT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE 'anon' END
                   FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                  WHERE a.grantee = 0 OR a.grantee = to_regrole('anon') ORDER BY 1) AS open_to
      FROM pg_proc AS p
     WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = :schema)
     ORDER BY 1
    """
)
_SEQUENCE_GRANTS = text(
    """
    SELECT c.oid::regclass::text AS identity,
           CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
               AS grantee,
           array_agg(a.privilege_type ORDER BY a.privilege_type) AS privileges
      FROM pg_class AS c, aclexplode(coalesce(c.relacl, acldefault('s', c.relowner))) AS a
     WHERE c.oid = ANY (:oids) AND a.grantee <> c.relowner
     GROUP BY 1, 2 ORDER BY 1, 2
    """
)
_SCHEMA_GRANTS = text(
    """
    SELECT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
               AS grantee,
           a.privilege_type AS privilege
      FROM pg_namespace AS n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) AS a
     WHERE n.nspname = :schema AND a.grantee <> n.nspowner
       AND (a.privilege_type = 'CREATE' OR a.grantee = 0 OR a.grantee = to_regrole('anon'))
     ORDER BY 1, 2
    """
)
_ROW_SECURITY = text("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = :oid")
_VERSION_TABLE = text(
    """
    SELECT c.relrowsecurity AS enabled,
           ARRAY(SELECT ARRAY[grantee, string_agg(privilege, ', ' ORDER BY privilege)]
                   FROM (SELECT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE 'anon' END AS grantee,
                                a.privilege_type AS privilege
                           FROM aclexplode(c.relacl) AS a
                          WHERE a.grantee = 0 OR a.grantee = to_regrole('anon')) AS open
                  GROUP BY grantee ORDER BY grantee) AS exposed
      FROM pg_class AS c WHERE c.oid = to_regclass(:table)
    """
)
_POLICIES = text(
    """
    SELECT policyname AS name, roles::text[] AS roles, cmd, permissive, qual, with_check
      FROM pg_policies WHERE schemaname = current_schema() AND tablename = :table
    """
)
# From the catalogue: to_regprocedure('auth.jwt()') needs USAGE on schema auth, which an
# application's role does not have on Supabase.
_SUPABASE_AUTH = text(
    """
    SELECT to_regrole('authenticated') IS NOT NULL AND EXISTS (
        SELECT FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
         WHERE n.nspname = 'auth' AND p.proname = 'jwt' AND p.pronargs = 0)
    """
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
