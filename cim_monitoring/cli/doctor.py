"""``doctor``: print what :func:`cim_monitoring.verify_database` finds, and the host's tables."""

from __future__ import annotations

import json

import typer
from rich.text import Text

from cim_monitoring.cli.console import EXIT_PROBLEM, AsJson, out
from cim_monitoring.cli.database import database
from cim_monitoring.verify import host_tables, table_columns, verify_database

HOST_TABLE_OF_INTEREST = "performance_metrics"


def doctor(as_json: AsJson = False) -> None:
    """Verify the database: revision, tables, columns, CHECKs, indexes, RLS, policies, grants.

    Exit 0 only when everything holds; each problem is printed on its own line with the fix.
    Also lists the host application's other tables, with performance_metrics' columns.
    """
    with database() as engine:
        findings = verify_database(engine)
        tables = host_tables(engine)
        metrics_columns = table_columns(engine, HOST_TABLE_OF_INTEREST)
    problems = [finding for finding in findings if not finding.ok]
    if as_json:
        typer.echo(json.dumps([finding.model_dump() for finding in findings], indent=2))
    else:
        for finding in findings:
            if finding.ok:
                out.print(Text.assemble(("✓", "green"), f" {finding.message}"))
            else:
                out.print(Text.assemble(("✗", "red"), f" {finding.message}. Fix: {finding.fix}"))
        _show_host_tables(tables, metrics_columns)
    if problems:
        if not as_json:
            out.print(f"doctor: {len(problems)} problem(s) found")
        raise typer.Exit(EXIT_PROBLEM)
    if not as_json:
        out.print("doctor: everything holds")


def _show_host_tables(tables: list[str], metrics_columns: list[str] | None) -> None:
    listed = ", ".join(tables) if tables else "none"
    out.print(f"host application tables beside ours ({len(tables)}): {listed}")
    if metrics_columns is None:
        out.print(f"{HOST_TABLE_OF_INTEREST}: not in this database")
        return
    out.print(f"{HOST_TABLE_OF_INTEREST} columns:")
    for column in metrics_columns:
        out.print(f"  {column}")
