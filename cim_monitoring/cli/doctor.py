"""``doctor``: verify a live database against this package, and show the host app's tables.

The revision first; then, per table, the shape the models declare (``doctor_schema``) and
the access the row-level-security migration sets up (``doctor_access``). Each problem is
one line with its fix.
"""

from __future__ import annotations

from collections.abc import Iterator

import typer
from rich.text import Text
from sqlalchemy import Connection, bindparam, text

from cim_monitoring import migrations
from cim_monitoring.cli import doctor_access as access
from cim_monitoring.cli import doctor_schema as schema
from cim_monitoring.cli.console import EXIT_PROBLEM, out
from cim_monitoring.cli.database import database
from cim_monitoring.cli.doctor_schema import Finding
from cim_monitoring.models import Base

HOST_TABLE_OF_INTEREST = "performance_metrics"


def doctor() -> None:
    """Verify the database: revision, tables, columns, CHECKs, indexes, RLS, policies, grants.

    Exit 0 only when everything holds; each problem is printed on its own line with the fix.
    Also lists the host application's other tables, with performance_metrics' columns.
    """
    with database() as engine, engine.connect() as connection:
        findings = list(examine(connection))
        host_tables = _host_tables(connection)
        metrics_columns = _columns_of(connection, HOST_TABLE_OF_INTEREST)
    problems = [finding for finding in findings if finding.fix]
    for finding in findings:
        if finding.fix:
            out.print(Text.assemble(("✗", "red"), f" {finding.text}. Fix: {finding.fix}"))
        else:
            out.print(Text.assemble(("✓", "green"), f" {finding.text}"))
    _show_host_tables(host_tables, metrics_columns)
    if problems:
        out.print(f"doctor: {len(problems)} problem(s) found")
        raise typer.Exit(EXIT_PROBLEM)
    out.print("doctor: everything holds")


def examine(connection: Connection) -> Iterator[Finding]:
    """Every check, in order; a database without the schema stops at the first."""
    found = migrations.state(connection)
    yield Finding(found.describe(), found.fix)
    if found.state in (migrations.State.NOT_MIGRATED, migrations.State.FOREIGN):
        return
    yield from access.admin_role(connection)
    for table in Base.metadata.sorted_tables:
        oid = connection.execute(text("SELECT to_regclass(:t)::oid"), {"t": table.name}).scalar()
        if oid is None:
            yield Finding(
                f"table {table.name} is missing",
                "restore it from a backup (its migration has run, so migrate will not recreate it)",
            )
            continue
        areas = (
            ("columns as the models declare", schema.columns(connection, oid, table)),
            ("CHECK constraints as the models declare", schema.checks(connection, oid, table)),
            ("indexes as the models declare", schema.indexes(connection, oid, table)),
            ("row level security enabled and forced", access.row_security(connection, oid, table)),
            (
                "policies and grants in place",
                access.policies(connection, table) + access.grants(connection, oid, table),
            ),
            (
                "readable only by monitoring_admin, owners, superusers, BYPASSRLS",
                access.readers(connection, oid, table),
            ),
        )
        for label, problems in areas:
            yield from problems or [Finding(f"{table.name}: {label}")]


def _host_tables(connection: Connection) -> list[str]:
    ours = [*Base.metadata.tables, migrations.VERSION_TABLE]
    return list(connection.execute(_HOST_TABLES, {"ours": ours}).scalars())


def _columns_of(connection: Connection, name: str) -> list[str] | None:
    oid = connection.execute(text("SELECT to_regclass(:t)::oid"), {"t": name}).scalar()
    if oid is None:
        return None
    return [
        f"{row.name} {row.type}{' NOT NULL' if row.not_null else ''}"
        for row in connection.execute(schema.COLUMNS, {"oid": oid})
    ]


def _show_host_tables(tables: list[str], metrics_columns: list[str] | None) -> None:
    listed = ", ".join(tables) if tables else "none"
    out.print(f"host application tables beside ours ({len(tables)}): {listed}")
    if metrics_columns is None:
        out.print(f"{HOST_TABLE_OF_INTEREST}: not in this database")
        return
    out.print(f"{HOST_TABLE_OF_INTEREST} columns:")
    for column in metrics_columns:
        out.print(f"  {column}")


_HOST_TABLES = text(
    """
    SELECT relname FROM pg_class
     WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p')
       AND relname NOT IN :ours
     ORDER BY relname
    """
).bindparams(bindparam("ours", expanding=True))
