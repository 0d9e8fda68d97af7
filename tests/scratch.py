"""A migrated database of a test module's own, for tests that must commit for real."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from cim_monitoring import make_engine, migrations

if TYPE_CHECKING:
    from conftest import PostgresServer


def migrated_engine(server: PostgresServer) -> Iterator[Engine]:
    """Yield an engine on a fresh database at head; the server drops it at session end."""
    engine = make_engine(server.create_database())
    with engine.begin() as connection:
        migrations.upgrade(connection)
    yield engine
    engine.dispose()
