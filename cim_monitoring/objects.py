"""The database objects this package owns, read from the catalogue, and who may touch them.

Ours are: the monitoring tables in the current schema, their partitions and sequences; the
private schema ``cim_monitoring`` and everything in it; and our Alembic version table when it
exists. Nothing here is a hard-coded list of functions or sequences, so an object a later
revision adds is found too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, text

from cim_monitoring.models import Base

# Not exposed by PostgREST (which serves `public` by default), so no /rpc/ for our functions.
FUNCTION_SCHEMA = "cim_monitoring"
VERSION_TABLE = "cim_monitoring_alembic_version"


class ObjectKind(StrEnum):
    SCHEMA = "schema"
    TABLE = "table"
    PARTITION = "partition"
    VERSION_TABLE = "version table"
    VIEW = "view"
    MATERIALIZED_VIEW = "materialized view"
    FOREIGN_TABLE = "foreign table"
    SEQUENCE = "sequence"
    FUNCTION = "function"
    TRIGGER_FUNCTION = "trigger function"
    # Runs as its owner (the partition upkeep): for monitoring_admin alone.
    DEFINER_FUNCTION = "security definer function"


# The kind of ACL (as acldefault() names it) and the has_*_privilege function for each kind.
_ACL_KINDS = {
    ObjectKind.SCHEMA: "n",
    ObjectKind.SEQUENCE: "s",
    ObjectKind.FUNCTION: "f",
    ObjectKind.TRIGGER_FUNCTION: "f",
    ObjectKind.DEFINER_FUNCTION: "f",
}


@dataclass(frozen=True)
class DatabaseObject:
    """One object of ours: ``identity`` as PostgreSQL prints it (``regclass``,
    ``regprocedure`` or the quoted schema name), usable in GRANT and REVOKE."""

    kind: ObjectKind
    identity: str
    oid: int
    owner: str


_OWNED = text(
    """
    WITH RECURSIVE tables AS (
        SELECT c.oid, CAST('table' AS text) AS kind
          FROM pg_class AS c
         WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
           AND c.relkind IN ('r', 'p') AND c.relname = ANY(:tables)
        UNION ALL
        SELECT i.inhrelid, 'partition' FROM pg_inherits AS i JOIN tables AS t ON i.inhparent = t.oid
    ),
    -- (oid, kind, priority): an object found twice keeps its most specific kind.
    relations AS (
        SELECT oid, kind, 1 AS priority FROM tables
        UNION ALL
        SELECT c.oid, 'version table', 1 FROM pg_class AS c
         WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
           AND c.relkind IN ('r', 'p') AND c.relname = :version_table
        UNION ALL
        SELECT d.objid, 'sequence', 1
          FROM pg_depend AS d JOIN tables AS t ON d.refobjid = t.oid
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
           AND d.deptype IN ('a', 'i')
           AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S'
        UNION ALL
        SELECT c.oid, CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table'
                                     WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                                     WHEN 'f' THEN 'foreign table' WHEN 'S' THEN 'sequence' END,
               2
          FROM pg_class AS c
         WHERE c.relnamespace = to_regnamespace(quote_ident(:schema))
           AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
    ),
    objects AS (
        SELECT DISTINCT ON (r.oid) r.kind, c.oid::regclass::text AS identity, c.oid,
               pg_get_userbyid(c.relowner) AS owner
          FROM relations AS r JOIN pg_class AS c ON c.oid = r.oid
         ORDER BY r.oid, r.priority
    )
    SELECT kind, identity, oid, owner FROM objects
    UNION ALL
    SELECT CASE WHEN p.prorettype = 'trigger'::regtype THEN 'trigger function'
                WHEN p.prosecdef THEN 'security definer function'
                ELSE 'function' END,
           p.oid::regprocedure::text, p.oid, pg_get_userbyid(p.proowner)
      FROM pg_proc AS p WHERE p.pronamespace = to_regnamespace(quote_ident(:schema))
    UNION ALL
    SELECT 'schema', quote_ident(n.nspname), n.oid, pg_get_userbyid(n.nspowner)
      FROM pg_namespace AS n WHERE n.nspname = :schema
    ORDER BY 1, 2
    """
)

# Every privilege the object's kind has on this server (acldefault lists them all for an owner:
# MAINTAIN exists from PostgreSQL 17), those `role` holds: directly, through a role it inherits
# from, or through PUBLIC.
_PRIVILEGES = text(
    """
    SELECT DISTINCT a.privilege_type
      FROM (SELECT CAST(:role AS name) AS role, CAST(:oid AS oid) AS target) AS q,
           aclexplode(acldefault(CAST(:acl_kind AS "char"), CAST(10 AS oid))) AS a
     WHERE CASE :acl_kind
             WHEN 'r' THEN has_table_privilege(q.role, q.target, a.privilege_type)
             WHEN 's' THEN has_sequence_privilege(q.role, q.target, a.privilege_type)
             WHEN 'f' THEN has_function_privilege(q.role, q.target, a.privilege_type)
             WHEN 'n' THEN has_schema_privilege(q.role, q.target, a.privilege_type)
           END
    """
)


def owned_objects(
    connection: Connection, *, version_table: str = VERSION_TABLE
) -> list[DatabaseObject]:
    """Every object of ours in the connection's database, by kind and identity."""
    rows = connection.execute(
        _OWNED,
        {
            "tables": sorted(Base.metadata.tables),
            "version_table": version_table,
            "schema": FUNCTION_SCHEMA,
        },
    )
    return [DatabaseObject(ObjectKind(row.kind), row.identity, row.oid, row.owner) for row in rows]


def role_privileges(connection: Connection, target: DatabaseObject, role: str) -> frozenset[str]:
    """What ``role`` (a role name, or ``PUBLIC``) may do to ``target``, memberships included:
    e.g. ``{"SELECT", "INSERT"}`` on a table, ``{"EXECUTE"}`` on a function."""
    found = connection.execute(
        _PRIVILEGES,
        {
            "acl_kind": _ACL_KINDS.get(target.kind, "r"),
            "oid": target.oid,
            # has_*_privilege spells the pseudo-role in lower case.
            "role": "public" if role.upper() == "PUBLIC" else role,
        },
    )
    return frozenset(found.scalars())
