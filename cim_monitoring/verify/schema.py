"""The tables as the models declare them.

Columns (type, nullability), CHECK constraints and indexes are compared by name with
``Base.metadata``; each problem comes with DDL rendered from the models as its fix.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import CheckConstraint, Connection, Table, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import AddConstraint, CreateColumn, CreateIndex

DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


class Problem(NamedTuple):
    """Something that does not hold, and how to fix it."""

    message: str
    fix: str


def columns(connection: Connection, oid: int, table: Table) -> list[Problem]:
    rows = connection.execute(COLUMNS, {"oid": oid}).all()
    actual = {row.name: (row.type, row.not_null) for row in rows}
    problems = []
    for column in table.columns:
        declared_type = column.type.compile(dialect=DIALECT).lower()
        where = f"column {table.name}.{column.name}"
        if column.name not in actual:
            ddl = CreateColumn(column).compile(dialect=DIALECT)
            problems.append(
                Problem(f"{where} is missing", f"ALTER TABLE {table.name} ADD COLUMN {ddl}")
            )
            continue
        found_type, not_null = actual.pop(column.name)
        if found_type != declared_type:
            problems.append(
                Problem(
                    f"{where} is {found_type}, the models say {declared_type}",
                    f"ALTER TABLE {table.name} ALTER COLUMN {column.name} TYPE {declared_type}",
                )
            )
        if not_null == column.nullable:
            change = "DROP" if column.nullable else "SET"
            problems.append(
                Problem(
                    f"{where} is {'NOT NULL' if not_null else 'nullable'}, unlike the models",
                    f"ALTER TABLE {table.name} ALTER COLUMN {column.name} {change} NOT NULL",
                )
            )
    problems.extend(
        Problem(
            f"column {table.name}.{name} is not in the models",
            _undeclared(f"ALTER TABLE {table.name} DROP COLUMN {name}"),
        )
        for name in actual
    )
    return problems


def checks(connection: Connection, oid: int, table: Table) -> list[Problem]:
    rows = connection.execute(_CHECKS, {"oid": oid}).all()
    actual = {row.name: row.validated for row in rows}
    problems = []
    for check in table.constraints:
        if not isinstance(check, CheckConstraint):
            continue
        name = str(check.name)
        if name not in actual:
            ddl = AddConstraint(check).compile(dialect=DIALECT)
            problems.append(Problem(f"CHECK {name} on {table.name} is missing", str(ddl)))
        elif not actual[name]:
            problems.append(
                Problem(
                    f"CHECK {name} on {table.name} is NOT VALID (old rows unchecked)",
                    f"ALTER TABLE {table.name} VALIDATE CONSTRAINT {name}",
                )
            )
        actual.pop(name, None)
    problems.extend(
        Problem(
            f"CHECK {name} on {table.name} is not in the models",
            _undeclared(f"ALTER TABLE {table.name} DROP CONSTRAINT {name}"),
        )
        for name in actual
    )
    return problems


def indexes(connection: Connection, oid: int, table: Table) -> list[Problem]:
    rows = connection.execute(_INDEXES, {"oid": oid}).all()
    actual = {row.name: row for row in rows}
    declared = {
        str(index.name): (index.unique, str(CreateIndex(index).compile(dialect=DIALECT)))
        for index in table.indexes
    }
    primary = table.primary_key
    declared[str(primary.name)] = (True, str(AddConstraint(primary).compile(dialect=DIALECT)))
    problems = []
    for name, (unique, ddl) in declared.items():
        found = actual.pop(name, None)
        if found is None:
            problems.append(Problem(f"index {name} on {table.name} is missing", ddl))
        elif found.unique != unique:
            problems.append(
                Problem(
                    f"index {name} on {table.name} is {'' if found.unique else 'not '}unique, "
                    "unlike the models",
                    f"DROP INDEX {name}; {ddl}",
                )
            )
        elif not found.valid:
            problems.append(
                Problem(
                    f"index {name} on {table.name} is invalid (a failed concurrent build)",
                    f"REINDEX INDEX CONCURRENTLY {name}",
                )
            )
    problems.extend(
        Problem(
            f"index {name} on {table.name} is not in the models",
            f"DROP INDEX {name}, or declare it in cim_monitoring.models with a migration",
        )
        for name in actual
    )
    return problems


def _undeclared(drop: str) -> str:
    return f"{drop}, or declare it in cim_monitoring.models with a new migration"


COLUMNS = text(
    """
    SELECT attname AS name, format_type(atttypid, atttypmod) AS type, attnotnull AS not_null
      FROM pg_attribute
     WHERE attrelid = :oid AND attnum > 0 AND NOT attisdropped
     ORDER BY attnum
    """
)
_CHECKS = text(
    """
    SELECT conname AS name, convalidated AS validated
      FROM pg_constraint WHERE conrelid = :oid AND contype = 'c'
    """
)
_INDEXES = text(
    """
    SELECT c.relname AS name, i.indisunique AS unique, i.indisvalid AS valid
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
     WHERE i.indrelid = :oid
    """
)
