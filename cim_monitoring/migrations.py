"""Running this package's Alembic history inside somebody else's database.

The history is tracked in its own version table, ``cim_monitoring_alembic_version``, so it lives
beside a host application's own Alembic history (which keeps ``alembic_version``). One upgrade is
one transaction: the migration lock, the adoption of a version row left in ``alembic_version`` by
an older cim-monitoring, every pending revision, and a final check that none of our tables is
left unprotected. Either all of it commits or none of it does, so no committed state ever shows
a monitoring table without row level security (on Supabase, new tables start out granted to
``anon``).

:func:`upgrade`, :func:`current` and :func:`render_sql` are the runner; the ``cim-monitoring``
command, ``alembic/env.py``, the tests and the benchmarks all go through it. A host application
passes :func:`host_include_name` to its own env.py so that its autogenerate never sees our
objects.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext, MigrationInfo, MigrationStep
from alembic.script import Script, ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from cim_monitoring.config import Settings
from cim_monitoring.db import connected
from cim_monitoring.errors import MigrationError
from cim_monitoring.models import Base
from cim_monitoring.objects import FUNCTION_SCHEMA, ObjectKind, owned_objects
from cim_monitoring.objects import VERSION_TABLE as VERSION_TABLE  # re-exported
from cim_monitoring.partitions import (
    add_partitions,
    can_add_partitions,
    database_today,
    is_partition,
)

logger = logging.getLogger(__name__)

# Where cim-monitoring before 0.2 kept its revision, and where a host's Alembic keeps its own.
LEGACY_VERSION_TABLE = "alembic_version"
# "cim-mon" in ASCII: a fixed key so every process of every version contends for the same lock.
MIGRATION_LOCK_KEY = 0x63696D2D6D6F6E
_POLL_SECONDS = 0.1
_PACKAGE_DIR = Path(__file__).resolve().parent
_INSUFFICIENT_PRIVILEGE = "42501"
_LOCK_NOT_AVAILABLE = "55P03"


def script_location() -> Path:
    """Where the revisions live: inside the wheel, or the checkout's top-level ``alembic/``."""
    for candidate in (_PACKAGE_DIR / "_alembic", _PACKAGE_DIR.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise MigrationError(f"cannot find the migration scripts next to {_PACKAGE_DIR}")


def script_directory() -> ScriptDirectory:
    return ScriptDirectory(str(script_location()))


def heads() -> tuple[str, ...]:
    """The head revision(s) this version of the package ships."""
    return tuple(sorted(script_directory().get_heads()))


def history() -> list[str]:
    """Every revision this version of the package ships, oldest first."""
    return [script.revision for script in reversed([*script_directory().walk_revisions()])]


def describe(revision: str) -> str:
    """The one-line description of one of our revisions."""
    script = script_directory().get_revision(revision)
    return script.doc if script is not None else revision


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic :class:`Config` for this history, for Alembic's own commands (``check``,
    ``revision --autogenerate``) run from code; ``env.py`` then uses ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def host_include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    """An ``include_name`` for a host application's env.py: everything but our objects.

    With it the host's autogenerate and ``alembic check`` never propose to drop (or notice) our
    tables, their indexes and constraints, our version table or our private schema::

        context.configure(..., include_name=cim_monitoring.migrations.host_include_name)
    """
    if type_ == "schema":
        return name != FUNCTION_SCHEMA
    if type_ == "table":
        return not is_ours(name)
    return not is_ours(parent_names.get("table_name"))


def is_ours(table: str | None) -> bool:
    """Whether ``table`` is one of the tables this package creates (or its version table, or
    a partition of the health checks)."""
    return table == VERSION_TABLE or table in Base.metadata.tables or is_partition(table)


@dataclass
class Migration:
    """What one run of the history did, filled in as it goes."""

    role: str = ""
    adopted: tuple[str, ...] = ()
    pending: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)

    def record(self, *, step: MigrationInfo, **_: Any) -> None:
        """Alembic's ``on_version_apply`` hook."""
        self.applied.extend(step.up_revision_ids)


def configure_options(migration: Migration) -> dict[str, Any]:
    """The options every MigrationContext of this history is configured with."""
    return {
        "version_table": VERSION_TABLE,
        "target_metadata": Base.metadata,
        "include_name": _include_name,
        "compare_type": True,
        "compare_server_default": True,
        # Offline, one BEGIN/COMMIT around the whole rendering; online, the runner's own
        # transaction wraps everything anyway (see the module docstring).
        "transaction_per_migration": False,
        "on_version_apply": (migration.record,),
    }


def _include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    """Our own autogenerate looks at our tables only: the host's share the database."""
    if type_ == "table":
        return name in Base.metadata.tables
    return True


def upgrade(
    bind: Engine | Connection, revision: str = "head", *, lock_wait: float | None = None
) -> list[str]:
    """Bring our schema to ``revision`` in one transaction; return the revisions applied.

    ``bind`` may be an Engine or a Connection. On a Connection already inside a transaction the
    work joins it and the caller commits; otherwise it commits here. Concurrent callers wait for
    each other up to ``lock_wait`` seconds (default ``MIGRATION_LOCK_TIMEOUT``); a database at
    ``revision`` already is left untouched and needs no privilege beyond reading the version
    table. Raises :class:`MigrationError` with a one-line reason when it cannot proceed.
    """
    script = script_directory()
    with connected(bind) as connection, migrating(connection, lock_wait=lock_wait) as migration:
        context = MigrationContext.configure(
            connection,
            opts={
                **configure_options(migration),
                "fn": _upgrade_steps(script, revision, migration),
            },
        )
        _run(context)
    return migration.applied


def current(bind: Engine | Connection) -> tuple[str, ...]:
    """The revision(s) the database is at: our version table, else a row an older
    cim-monitoring left in ``alembic_version``; empty when it was never migrated."""
    return state(bind).current


class State(StrEnum):
    """Where a database stands with respect to this package's history."""

    NOT_MIGRATED = "not migrated"
    LEGACY = "legacy"  # our revision still in alembic_version: the next upgrade adopts it
    BEHIND = "behind"
    AT_HEAD = "at head"
    FOREIGN = "foreign"  # a revision this version of the package does not know


@dataclass(frozen=True)
class SchemaState:
    """What :func:`state` found: the database's revisions and what this package ships."""

    state: State
    current: tuple[str, ...]
    heads: tuple[str, ...]

    def describe(self) -> str:
        """What was found, in one line for an operator."""
        at, head = ", ".join(self.current), ", ".join(self.heads)
        return {
            State.NOT_MIGRATED: "the database has no cim-monitoring schema yet",
            State.LEGACY: f"the schema is at revision {at}, recorded in {LEGACY_VERSION_TABLE} "
            "by an older cim-monitoring",
            State.BEHIND: f"the schema is at revision {at}, not {head}",
            State.AT_HEAD: f"schema revision {head} is head",
            State.FOREIGN: f"{VERSION_TABLE} holds revision {at}, which this cim-monitoring "
            f"(head {head}) does not know",
        }[self.state]

    @property
    def fix(self) -> str:
        """What to do about it; empty at head."""
        if self.state is State.AT_HEAD:
            return ""
        if self.state is State.FOREIGN:
            return "a newer cim-monitoring migrated this database: upgrade the package"
        if self.state is State.LEGACY:
            return f"run `cim-monitoring migrate` (it moves the row into {VERSION_TABLE})"
        return "run `cim-monitoring migrate`"


def state(bind: Engine | Connection) -> SchemaState:
    """Classify the database: never migrated, legacy, behind, at head, or foreign."""
    with connected(bind) as connection:
        ours = _version_rows(connection, VERSION_TABLE)
        legacy = _legacy_revisions(connection) if not ours else ()
    shipped = heads()
    if ours and set(ours) - set(history()):
        return SchemaState(State.FOREIGN, ours, shipped)
    if not ours:
        found = State.LEGACY if legacy else State.NOT_MIGRATED
        return SchemaState(found, legacy, shipped)
    return SchemaState(State.AT_HEAD if ours == shipped else State.BEHIND, ours, shipped)


def render_sql(revision: str = "head") -> str:
    """The SQL of an upgrade from an empty database to ``revision``, for review; needs no
    database."""
    script = script_directory()
    buffer = io.StringIO()
    context = MigrationContext.configure(
        dialect_name="postgresql",
        opts={
            **configure_options(rendering := Migration()),
            "as_sql": True,
            "literal_binds": True,
            "output_buffer": buffer,
            "fn": _upgrade_steps(script, revision, rendering),
        },
    )
    _run(context)
    return buffer.getvalue()


@contextmanager
def migrating(connection: Connection, *, lock_wait: float | None = None) -> Iterator[Migration]:
    """One run of the history on ``connection``, as one transaction.

    Takes the migration lock, adopts a legacy version row, lets the caller run the revisions,
    makes the partitions of the days ahead, then refuses to commit a state in which one of our
    tables is unprotected. ``env.py`` and
    :func:`upgrade` both run the history inside this block.
    """
    wait = Settings().migration_lock_timeout if lock_wait is None else lock_wait
    migration = Migration()
    owns_transaction = not connection.in_transaction()
    with connection.begin() if owns_transaction else nullcontext(), _translated(migration):
        migration.role = connection.execute(text("SELECT current_user")).scalar_one()
        acquire_migration_lock(connection, timeout=wait)
        migration.adopted = _adopt_legacy_version(connection)
        _refuse_foreign_revisions(connection)
        yield migration
        # Every migrate makes the days ahead, at head too, when this role may (monitoring_admin).
        if can_add_partitions(connection):
            add_partitions(connection, database_today(connection))
        if migration.applied or migration.adopted:
            _verify_protected(connection)
    if migration.applied:
        logger.info("migrated", extra={"revisions": migration.applied})


def acquire_migration_lock(connection: Connection, *, timeout: float) -> None:
    """Take the migration advisory lock for the current transaction, or raise
    :class:`MigrationError` after ``timeout`` seconds.

    Polls rather than blocks so the wait is bounded without touching the transaction's
    ``lock_timeout``. The lock goes with the transaction, so no lock outlives a failed run.
    """
    statement = text("SELECT pg_try_advisory_xact_lock(:key)")
    deadline = time.monotonic() + timeout
    while not connection.execute(statement, {"key": MIGRATION_LOCK_KEY}).scalar_one():
        if time.monotonic() >= deadline:
            raise MigrationError(
                f"another process has been migrating this database for over {timeout:g}s; "
                "retry when it finishes, or raise MIGRATION_LOCK_TIMEOUT"
            )
        time.sleep(_POLL_SECONDS)


def _run(context: MigrationContext) -> None:
    # Revisions reach the context through alembic's ``op`` proxy, which env.py-based runs
    # install through EnvironmentContext; called from a host's env.py, do it after the host's
    # own run_migrations() (the proxy is module-global).
    with Operations.context(context), context.begin_transaction():
        context.run_migrations()


def _upgrade_steps(script: ScriptDirectory, destination: str, migration: Migration) -> Any:
    """Alembic's work function for an upgrade to ``destination`` (what ``alembic upgrade``
    builds with ScriptDirectory's private helper, from public pieces)."""

    def steps(heads: tuple[str, ...], _: MigrationContext) -> list[MigrationStep]:
        try:
            scripts: list[Script] = list(
                script.iterate_revisions(destination, heads, implicit_base=True)
            )
        except CommandError as exc:
            raise MigrationError(f"cannot upgrade to {destination}: {exc}") from None
        scripts.reverse()
        migration.pending = [s.revision for s in scripts]
        return [MigrationStep.upgrade_from_script(script.revision_map, s) for s in scripts]

    return steps


def _version_rows(connection: Connection, table: str) -> tuple[str, ...] | None:
    """The revisions in ``table``, or None when there is no such table."""
    if not inspect(connection).has_table(table):
        return None
    rows = connection.execute(text(f"SELECT version_num FROM {table}")).scalars()  # noqa: S608
    return tuple(sorted(rows))


def _legacy_revisions(connection: Connection) -> tuple[str, ...]:
    """Our revisions in ``alembic_version``, where cim-monitoring kept them before 0.2."""
    known = set(history())
    rows = _version_rows(connection, LEGACY_VERSION_TABLE) or ()
    return tuple(revision for revision in rows if revision in known)


def _adopt_legacy_version(connection: Connection) -> tuple[str, ...]:
    """Move our row out of ``alembic_version`` into our own table; ``alembic_version`` stays
    the host's, and is dropped only when nothing else is left in it. Data is not touched."""
    if _version_rows(connection, VERSION_TABLE) is not None:
        return ()
    ours = _legacy_revisions(connection)
    if not ours:
        return ()
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    for revision in ours:
        context.stamp(script_directory(), revision)
    connection.execute(
        text(f"DELETE FROM {LEGACY_VERSION_TABLE} WHERE version_num = ANY(:ours)"),  # noqa: S608
        {"ours": list(ours)},
    )
    if not _version_rows(connection, LEGACY_VERSION_TABLE):
        connection.execute(text(f"DROP TABLE {LEGACY_VERSION_TABLE}"))
    logger.info("adopted the version row of an older cim-monitoring", extra={"revisions": ours})
    return ours


def _refuse_foreign_revisions(connection: Connection) -> None:
    found = state(connection)
    if found.state is State.FOREIGN:
        raise MigrationError(f"{found.describe()}: {found.fix}")


_PROTECTION = text(
    """
    SELECT c.relname, NOT c.relrowsecurity AS rls_off,
           NOT c.relforcerowsecurity AND c.relname <> :version_table AS not_forced,
           EXISTS (SELECT FROM aclexplode(c.relacl) AS a
                    WHERE a.grantee = 0 OR a.grantee = to_regrole('anon')) AS exposed
      FROM pg_class AS c WHERE c.oid = ANY(:oids) ORDER BY c.relname
    """
)
_TABLE_KINDS = (ObjectKind.TABLE, ObjectKind.PARTITION, ObjectKind.VERSION_TABLE)


def _verify_protected(connection: Connection) -> None:
    """Refuse to commit a state in which one of our tables lacks its protection."""
    oids = [o.oid for o in owned_objects(connection) if o.kind in _TABLE_KINDS]
    for row in connection.execute(_PROTECTION, {"oids": oids, "version_table": VERSION_TABLE}):
        gaps = [
            gap
            for gap, missing in (
                ("row level security is off", row.rls_off),
                ("row level security is not forced", row.not_forced),
                ("PUBLIC or anon holds privileges", row.exposed),
            )
            if missing
        ]
        if gaps:
            raise MigrationError(
                f"refusing to commit: table {row.relname} would be left unprotected "
                f"({'; '.join(gaps)}); upgrade to head rather than to an intermediate revision"
            )


@contextmanager
def _translated(migration: Migration) -> Iterator[None]:
    """Turn the failures an operator can act on into one-line :class:`MigrationError`s."""
    try:
        yield
    except DBAPIError as exc:
        sqlstate = getattr(exc.orig, "sqlstate", None)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if sqlstate == _LOCK_NOT_AVAILABLE:
            raise MigrationError(
                f"a migration gave up waiting for a table lock (lock_timeout): {reason}; "
                "a long-running transaction holds it, retry when it ends"
            ) from exc
        if sqlstate == _INSUFFICIENT_PRIVILEGE:
            failing = next((r for r in migration.pending if r not in migration.applied), None)
            where = f"revision {failing}" if failing else "the migration"
            raise MigrationError(
                f"role {migration.role or 'of this connection'} lacks a privilege {where} "
                f"needs: {reason}; migrate as the role that owns the monitoring tables (the one "
                "that first migrated them) or as a superuser"
            ) from exc
        raise
