"""``migrate``: bring the database schema to this package's head."""

from __future__ import annotations

from cim_monitoring.cli.console import out
from cim_monitoring.cli.database import apply_migrations, database


def migrate() -> None:
    """Bring the database schema to head (`alembic upgrade head`, same lock); list what ran."""
    with database() as engine:
        applied = apply_migrations(engine)
    for line in applied:
        out.print(f"applied {line}")
    if not applied:
        out.print("the schema is already at head: nothing to apply")
