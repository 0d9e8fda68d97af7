"""Reading table privileges from the catalog, for the access-control tests."""

from __future__ import annotations

from sqlalchemy import Connection, text

_PRIVILEGES = text(
    "SELECT a.privilege_type FROM pg_class, aclexplode(relacl) AS a "
    "WHERE pg_class.oid = CAST(:table AS regclass) "
    "AND a.grantee = CASE WHEN :grantee = 'PUBLIC' THEN 0::oid ELSE to_regrole(:grantee) END"
)


def table_privileges(connection: Connection, table: str, grantee: str) -> set[str]:
    """What ``grantee`` (a role name, or ``PUBLIC``) holds on ``table`` by explicit grant."""
    return set(connection.execute(_PRIVILEGES, {"table": table, "grantee": grantee}).scalars())
