"""Writing health checks: one at a time, or in bulk through PostgreSQL COPY."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import islice
from typing import Any

import psycopg
from psycopg.copy import QueuedLibpqWriter
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import AdaptedConnection
from sqlalchemy.orm import Session

from cim_monitoring.db import driver_error
from cim_monitoring.errors import ConfigurationError
from cim_monitoring.repository._common import CHECKS, stopwatch
from cim_monitoring.repository._copy_rows import COPY_TYPES, CheckInput, Row, copy_rows
from cim_monitoring.schemas import HealthCheckIn, HealthCheckOut
from cim_monitoring.schemas.params import Clock
from cim_monitoring.vocabulary import HEALTH_CHECK_COLUMNS

logger = logging.getLogger(__name__)

# Rows validated per step of the COPY: the writer thread sends one chunk while the next is
# checked, and a bad row is reported together with the other bad rows of its chunk.
CHUNK_SIZE = 1000
_COLUMNS = ", ".join(HEALTH_CHECK_COLUMNS)
_COPY = f"COPY service_health_checks ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
# PostgreSQL refuses COPY FROM into a table whose RLS applies to the current role (every
# application role; only superusers and BYPASSRLS roles escape it). Such roles COPY into a
# session-private staging table and move the rows with one INSERT ... SELECT, which the
# policies check and the rollup trigger sees as one statement, as it sees a COPY.
_STAGING = "cim_monitoring_checks_staging"
_RLS_APPLIES = text("SELECT row_security_active('service_health_checks')")
# Its columns and their types are the table's own: declared nowhere else.
_CREATE_STAGING = text(
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} ON COMMIT DELETE ROWS "  # noqa: S608
    f"AS SELECT {_COLUMNS} FROM service_health_checks WITH NO DATA"
)
_COPY_STAGING = f"COPY {_STAGING} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_MOVE_STAGED = text(
    f"WITH moved AS (DELETE FROM {_STAGING} RETURNING {_COLUMNS}) "  # noqa: S608 - constants
    f"INSERT INTO service_health_checks ({_COLUMNS}) SELECT {_COLUMNS} FROM moved"
)

# One statement for every call (its compiled form is cached); the columns are the given keys.
_INSERT = insert(CHECKS).returning(*CHECKS.c)


def record_check(
    session: Session, check: CheckInput, *, now: datetime | None = None
) -> HealthCheckOut:
    """Insert one check and return it as stored.

    ``created_at`` defaults to ``now`` when given, else to the transaction's start time.
    """
    valid = HealthCheckIn.model_validate(check)
    values = valid.model_dump(exclude_none=True)
    if "created_at" not in values and now is not None:
        values["created_at"] = Clock(now=now).now
    # Without created_at the column's default applies: the transaction's start time.
    row = session.execute(_INSERT, values).one()
    logger.debug(
        "health check recorded",
        extra={"service": valid.service_name, "status": valid.status, "check_id": row.id},
    )
    return HealthCheckOut.model_validate(row)


def record_checks(
    session: Session, checks: Iterable[CheckInput], *, now: datetime | None = None
) -> int:
    """Bulk-insert checks with one COPY on the session's connection; return how many.

    Rows are validated a chunk at a time while earlier chunks stream to the server. A bad row
    raises ``ValidationError`` whose location starts with its index in ``checks``; then nothing
    of the batch persists and the caller's transaction stays usable (the COPY runs inside a
    savepoint). Checks without ``created_at`` get ``now``, else the transaction's start time:
    one timestamp for the whole batch, the same default as :func:`record_check`.
    """
    clock = Clock(now=now).now
    with stopwatch() as elapsed, session.begin_nested():
        default_created_at = clock or session.execute(select(func.now())).scalar_one()
        staged = session.execute(_RLS_APPLIES).scalar_one()
        if staged:
            session.execute(_CREATE_STAGING)
        statement = _COPY_STAGING if staged else _COPY
        rows = _rows(checks, default_created_at)
        connection = session.connection()
        driver = connection.connection.dbapi_connection
        try:
            if isinstance(driver, psycopg.Connection):
                count = _copy(driver, statement, rows)
            elif isinstance(driver, AdaptedConnection) and isinstance(
                driver.driver_connection, psycopg.AsyncConnection
            ):
                # Under AsyncSession.run_sync: the async driver, awaited from this greenlet.
                count = driver.run_async(
                    lambda async_driver: _copy_async(async_driver, statement, rows)
                )
            else:
                raise ConfigurationError(
                    "record_checks streams COPY through psycopg 3; the session's engine must use "
                    "postgresql+psycopg://"
                )
        except psycopg.Error as exc:
            # The driver raised it, not SQLAlchemy: handled as SQLAlchemy would (the pool drops
            # a lost connection; our engines raise the package's errors).
            raise driver_error(connection, statement, exc) from exc
        if staged:
            session.execute(_MOVE_STAGED)
    logger.debug("health checks copied", extra={"count": count, "duration_ms": elapsed()})
    return count


def _copy(connection: psycopg.Connection[Any], statement: str, rows: Iterable[Row]) -> int:
    count = 0
    with (
        connection.cursor() as cursor,
        cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy,
    ):
        copy.set_types(COPY_TYPES)
        write_row = copy.write_row
        for count, row in enumerate(rows, 1):  # noqa: B007 - the count is the result
            write_row(row)
    return count


async def _copy_async(
    connection: psycopg.AsyncConnection[Any], statement: str, rows: Iterable[Row]
) -> int:
    count = 0
    async with connection.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types(COPY_TYPES)
        for count, row in enumerate(rows, 1):  # noqa: B007 - the count is the result
            await copy.write_row(row)
    return count


def _rows(checks: Iterable[CheckInput], default_created_at: datetime) -> Iterator[Row]:
    """The COPY rows of ``checks``, validated a chunk at a time as the COPY consumes them."""
    for offset, chunk in _chunks(checks):
        yield from copy_rows(chunk, offset, default_created_at)


def _chunks(items: Iterable[CheckInput]) -> Iterator[tuple[int, list[CheckInput]]]:
    iterator = iter(items)
    offset = 0
    while chunk := list(islice(iterator, CHUNK_SIZE)):
        yield offset, chunk
        offset += len(chunk)
