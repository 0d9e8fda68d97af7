"""Verify a live database against this package.

The revision first; then, per table the models declare, its shape (``schema``: columns,
CHECKs, indexes), its day partitions ahead (``partitions``) and who may touch it (``access``:
row level security, policies, grants, readers). An application may call
:func:`verify_database` from its health endpoint (as its own login role: every query reads the
catalogue only); ``cim-monitoring doctor`` prints the same findings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sqlalchemy import Connection, Engine, Table, bindparam, text

from cim_monitoring import migrations
from cim_monitoring.db import connected
from cim_monitoring.models import Base
from cim_monitoring.objects import FUNCTION_SCHEMA
from cim_monitoring.schemas import Finding
from cim_monitoring.verify import access, partitions, schema
from cim_monitoring.verify.schema import Problem

__all__ = ["host_tables", "table_columns", "verify_database"]

# (check, what holds when it passes, the problems it finds) for each table of ours.
Area = tuple[str, str, Callable[[Connection, int, Table], list[Problem]]]
_AREAS: tuple[Area, ...] = (
    ("columns", "columns as the models declare", schema.columns),
    ("checks", "CHECK constraints as the models declare", schema.checks),
    ("indexes", "indexes as the models declare", schema.indexes),
    (
        "partitions",
        f"a partition for each of the next {partitions.DAYS_AHEAD} days, where partitioned by day",
        partitions.missing,
    ),
    ("row_security", "row level security enabled and forced", access.row_security),
    (
        "policies",
        "policies in place",
        lambda connection, _, table: access.policies(connection, table),
    ),
    ("grants", "grants as documented", access.grants),
    (
        "readers",
        "readable only by monitoring_admin, owners, superusers, BYPASSRLS",
        access.readers,
    ),
)


def verify_database(bind: Engine | Connection) -> list[Finding]:
    """Every check, in order, passed or not; a database without our schema stops at the first.

    ``all(f.ok for f in verify_database(engine))`` is the health of the monitoring schema.
    """
    with connected(bind) as connection:
        return list(_examine(connection))


def host_tables(bind: Engine | Connection) -> list[str]:
    """The other tables in the schema: the host application's."""
    ours = [*Base.metadata.tables, migrations.VERSION_TABLE]
    with connected(bind) as connection:
        found = connection.execute(_HOST_TABLES, {"ours": ours}).scalars()
        return [name for name in found if not migrations.is_ours(name)]


def table_columns(bind: Engine | Connection, name: str) -> list[str] | None:
    """``name type [NOT NULL]`` per column of table ``name``, or None when there is none."""
    with connected(bind) as connection:
        oid = _oid(connection, name)
        if oid is None:
            return None
        return [
            f"{row.name} {row.type}{' NOT NULL' if row.not_null else ''}"
            for row in connection.execute(schema.COLUMNS, {"oid": oid})
        ]


def _examine(connection: Connection) -> Iterator[Finding]:
    found = migrations.state(connection)
    problems = [Problem(found.describe(), found.fix)] if found.fix else []
    yield from _findings("revision", found.describe(), problems)
    if found.state in (migrations.State.NOT_MIGRATED, migrations.State.FOREIGN):
        return
    yield from _findings(
        "admin_role", f"role {access.ADMIN_ROLE} exists", access.admin_role(connection)
    )
    yield from _findings(
        "function_schema",
        f"schema {FUNCTION_SCHEMA}: nobody but its owner creates in it",
        access.function_schema(connection),
    )
    yield from _findings(
        "functions",
        "functions: search_path pinned, not executable by PUBLIC or anon",
        access.functions(connection),
    )
    yield from _findings(
        "sequences", "sequences: no privilege for anybody", access.sequences(connection)
    )
    yield from _findings(
        "version_table",
        f"{migrations.VERSION_TABLE}: row level security enabled, nothing for PUBLIC or anon",
        access.version_table(connection),
    )
    for table in Base.metadata.sorted_tables:
        oid = _oid(connection, table.name)
        if oid is None:
            yield Finding(
                check="table",
                ok=False,
                message=f"table {table.name} is missing",
                fix="restore it from a backup (its migration has run, so migrate will not "
                "recreate it)",
            )
            continue
        for check, holds, find in _AREAS:
            yield from _findings(check, f"{table.name}: {holds}", find(connection, oid, table))


def _findings(check: str, holds: str, problems: list[Problem]) -> Iterator[Finding]:
    """One passed finding saying what holds, or one failed finding per problem."""
    if not problems:
        yield Finding(check=check, ok=True, message=holds)
    for problem in problems:
        yield Finding(check=check, ok=False, message=problem.message, fix=problem.fix)


def _oid(connection: Connection, name: str) -> int | None:
    oid: int | None = connection.execute(text("SELECT to_regclass(:t)::oid"), {"t": name}).scalar()
    return oid


_HOST_TABLES = text(
    """
    SELECT relname FROM pg_class
     WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p')
       AND relname NOT IN :ours
     ORDER BY relname
    """
).bindparams(bindparam("ours", expanding=True))
