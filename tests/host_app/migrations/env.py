"""The host application's env.py, as cim-monitoring's README tells a host to write it."""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from host_app.host_models import HostBase
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from cim_monitoring import migrations as monitoring

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

OPTIONS = {
    "target_metadata": HostBase.metadata,
    # Our autogenerate and `alembic check` ignore cim-monitoring's tables and version table.
    "include_name": monitoring.host_include_name,
    "compare_type": True,
}


def run_migrations_offline() -> None:
    context.configure(dialect_name="postgresql", literal_binds=True, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(os.environ["DATABASE_URL"], poolclass=NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, **OPTIONS)
        with context.begin_transaction():
            context.run_migrations()
        if os.environ.get("HOST_MIGRATES_MONITORING") == "1":
            # After our own revisions, in a transaction of its own.
            monitoring.upgrade(connection)
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
