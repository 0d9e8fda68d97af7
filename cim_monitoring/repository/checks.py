"""Writing health checks: one at a time, or in bulk through PostgreSQL COPY."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from itertools import islice
from typing import Any

import psycopg
from psycopg.copy import QueuedLibpqWriter
from pydantic import TypeAdapter, ValidationError
from pydantic_core import InitErrorDetails
from sqlalchemy import func, insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from cim_monitoring.errors import ConfigurationError
from cim_monitoring.repository._common import CHECKS, at, stopwatch
from cim_monitoring.schemas import HealthCheckIn, HealthCheckOut
from cim_monitoring.schemas.params import Clock

logger = logging.getLogger(__name__)

# Rows validated per step of the COPY: large enough that pydantic validates a list in one call,
# small enough that the writer thread is already sending while the next chunk is checked.
CHUNK_SIZE = 1000
_COPY = (
    "COPY service_health_checks "
    "(service_name, status, latency_ms, probe_details, error_message, created_at) "
    "FROM STDIN (FORMAT BINARY)"
)
_COPY_TYPES = ["text", "text", "int4", "jsonb", "text", "timestamptz"]
_CHUNK = TypeAdapter(list[HealthCheckIn])

CheckInput = HealthCheckIn | Mapping[str, Any]


def record_check(
    session: Session, check: CheckInput, *, now: datetime | None = None
) -> HealthCheckOut:
    """Insert one check and return it as stored.

    ``created_at`` defaults to ``now`` when given, else to the transaction's start time.
    """
    valid = HealthCheckIn.model_validate(check)
    clock = Clock(now=now).now
    created_at = valid.created_at or clock
    values = valid.model_dump(exclude={"created_at"})
    row = session.execute(
        insert(CHECKS).values(**values, created_at=at(created_at)).returning(*CHECKS.c)
    ).one()
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
        try:
            count = _copy(_psycopg_connection(session), checks, default_created_at)
        except psycopg.Error as exc:
            # The driver raised it, not SQLAlchemy: wrap it the same way, so callers (and
            # session_scope's unavailability check) see one family of database errors.
            raise DBAPIError.instance(_COPY, None, exc, psycopg.Error) from exc
    logger.debug("health checks copied", extra={"count": count, "duration_ms": elapsed()})
    return count


def _copy(
    connection: psycopg.Connection[Any], checks: Iterable[CheckInput], default_created_at: datetime
) -> int:
    count = 0
    with (
        connection.cursor() as cursor,
        cursor.copy(_COPY, writer=QueuedLibpqWriter(cursor)) as copy,
    ):
        copy.set_types(_COPY_TYPES)
        for offset, chunk in _chunks(checks):
            for check in _validate(chunk, offset):
                copy.write_row(
                    (
                        check.service_name,
                        check.status,
                        check.latency_ms,
                        check.probe_details,
                        check.error_message,
                        check.created_at or default_created_at,
                    )
                )
            count += len(chunk)
    return count


def _psycopg_connection(session: Session) -> psycopg.Connection[Any]:
    driver_connection = session.connection().connection.driver_connection
    if not isinstance(driver_connection, psycopg.Connection):
        raise ConfigurationError(
            "record_checks streams COPY through psycopg 3; the session's engine must use "
            "postgresql+psycopg://"
        )
    return driver_connection


def _chunks(items: Iterable[CheckInput]) -> Iterator[tuple[int, list[CheckInput]]]:
    iterator = iter(items)
    offset = 0
    while chunk := list(islice(iterator, CHUNK_SIZE)):
        yield offset, chunk
        offset += len(chunk)


def _validate(chunk: list[CheckInput], offset: int) -> list[HealthCheckIn]:
    try:
        return _CHUNK.validate_python(chunk)
    except ValidationError as exc:
        raise _reindexed(exc, offset) from None


def _reindexed(error: ValidationError, offset: int) -> ValidationError:
    """The chunk's errors, located by index in the whole batch: ``checks`` → ``17.latency_ms``."""
    lines: list[InitErrorDetails] = []
    for line in error.errors():
        index, *rest = line["loc"]
        details = InitErrorDetails(
            type=line["type"], loc=(offset + int(index), *rest), input=line["input"]
        )
        if "ctx" in line:
            details["ctx"] = line["ctx"]
        lines.append(details)
    return ValidationError.from_exception_data("checks", lines)
