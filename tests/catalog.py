"""Reading privileges and schema contents from the catalog, for the access-control tests."""

from __future__ import annotations

from sqlalchemy import Connection, text

from cim_monitoring import DatabaseObject, ObjectKind, owned_objects

_PRIVILEGES = text(
    "SELECT a.privilege_type FROM pg_class, aclexplode(relacl) AS a "
    "WHERE pg_class.oid = CAST(:table AS regclass) "
    "AND a.grantee = CASE WHEN :grantee = 'PUBLIC' THEN 0::oid ELSE to_regrole(:grantee) END"
)


def table_privileges(connection: Connection, table: str, grantee: str) -> set[str]:
    """What ``grantee`` (a role name, or ``PUBLIC``) holds on ``table`` by explicit grant."""
    return set(connection.execute(_PRIVILEGES, {"table": table, "grantee": grantee}).scalars())


_CONTENTS = text(
    """
    WITH schemas AS (
        SELECT to_regnamespace(name) AS oid FROM unnest(CAST(:schemas AS text[])) AS name
    )
    SELECT c.oid::regclass::text FROM pg_class AS c JOIN schemas AS s ON c.relnamespace = s.oid
     WHERE c.relkind NOT IN ('i', 'I')
    UNION ALL
    SELECT p.oid::regprocedure::text FROM pg_proc AS p JOIN schemas AS s ON p.pronamespace = s.oid
    UNION ALL
    SELECT t.oid::regtype::text FROM pg_type AS t JOIN schemas AS s ON t.typnamespace = s.oid
     WHERE t.typrelid = 0 AND t.typcategory <> 'A' AND t.typtype <> 'm'
    """
)


def schema_contents(connection: Connection, schemas: list[str]) -> set[str]:
    """Every relation (but indexes), function and standalone type in ``schemas``."""
    return set(connection.execute(_CONTENTS, {"schemas": schemas}).scalars())


def ours(connection: Connection, *kinds: ObjectKind) -> list[DatabaseObject]:
    """Our objects of ``kinds``, as the package lists them; there must be one at least."""
    found = [o for o in owned_objects(connection) if o.kind in kinds]
    assert found, kinds
    return found
