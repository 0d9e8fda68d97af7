"""``migrate``: bring the database schema to this package's head, or print its SQL."""

from __future__ import annotations

from typing import Annotated

import typer

from cim_monitoring import migrations
from cim_monitoring.cli.console import out
from cim_monitoring.cli.database import apply_migrations, database


def migrate(
    sql: Annotated[
        bool,
        typer.Option("--sql", help="Print the SQL of a full upgrade for review; no database."),
    ] = False,
) -> None:
    """Bring the database schema to head in one transaction, under the migration lock; list
    what ran. A revision an older cim-monitoring left in alembic_version is adopted."""
    if sql:
        typer.echo(migrations.render_sql(), nl=False)
        return
    with database() as engine:
        done = apply_migrations(engine)
    for line in done:
        out.print(line)
    if not done:
        out.print("the schema is already at head: nothing to apply")
