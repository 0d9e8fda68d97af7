"""COPY rows for ``record_checks``: validated like ``HealthCheckIn``, at a fraction of the cost.

Validating 200k plain dicts through the pydantic model costs more than the COPY itself. So a
plain ``dict`` of exactly the expected types takes a short path: a handful of type and range
tests, and the one JSON serialization of ``probe_details`` the COPY needs anyway. The short path
only ever *accepts* what the model accepts; anything it is unsure of (another mapping type,
a string to parse, a non-ASCII message, a service name not yet seen) goes through the model,
row by row. When the model rejects a row, the whole chunk is validated by pydantic again, so the
error is exactly the one the model gives (every bad row of the chunk, located by batch index).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import InitErrorDetails

from cim_monitoring.schemas import HealthCheckIn
from cim_monitoring.schemas.fields import COMPACT_JSON
from cim_monitoring.vocabulary import DETAILS_MAX_BYTES, HEALTH_STATUSES, INT32_MAX, MESSAGE_MAX

CheckInput = HealthCheckIn | Mapping[str, Any]
# The wire type of each of HEALTH_CHECK_COLUMNS, in its order, as every Row below holds them.
# jsonb's binary wire format: a version byte, then the JSON text. Sending it as bytea skips a
# second serialization in the driver; COPY only needs the bytes to match the column.
COPY_TYPES = ["text", "text", "int4", "bytea", "text", "timestamptz"]
_JSONB_VERSION = b"\x01"
_EMPTY_OBJECT = _JSONB_VERSION + b"{}"
_FIELDS = frozenset(HealthCheckIn.model_fields)
_STATUSES = frozenset(HEALTH_STATUSES)
_CHUNK = TypeAdapter(list[HealthCheckIn])
# Service names the model has accepted: a fleet has few, so after the first row of each the
# name costs one set lookup. Bounded, so a stream of distinct names cannot grow it forever.
_KNOWN_NAMES: set[str] = set()
_KNOWN_NAMES_MAX = 10_000

Row = tuple[str, str, int | None, bytes, str | None, datetime]


def copy_rows(chunk: list[CheckInput], offset: int, default_created_at: datetime) -> list[Row]:
    """The COPY rows of ``chunk`` (rows ``offset...`` of the batch), or ``ValidationError``."""
    rows = []
    for check in chunk:
        row = _plain(check, default_created_at) if type(check) is dict else None
        if row is None:
            try:
                valid = check if isinstance(check, HealthCheckIn) else _model(check)
            except ValidationError:
                _raise_chunk_errors(chunk, offset)
            row = _from_model(valid, default_created_at)
        rows.append(row)
    return rows


def _model(check: Mapping[str, Any]) -> HealthCheckIn:
    valid = HealthCheckIn.model_validate(check)
    if len(_KNOWN_NAMES) >= _KNOWN_NAMES_MAX:
        _KNOWN_NAMES.clear()
    _KNOWN_NAMES.add(valid.service_name)
    return valid


def _plain(check: dict[str, Any], default_created_at: datetime) -> Row | None:
    """The row of a dict that certainly validates, or None when the model must decide."""
    get = check.get
    name, status, latency = get("service_name"), get("status"), get("latency_ms")
    message, created_at = get("error_message"), get("created_at")
    if not (
        check.keys() <= _FIELDS
        and type(name) is str
        and name in _KNOWN_NAMES
        and type(status) is str
        and status in _STATUSES
        and (latency is None or (type(latency) is int and 0 <= latency <= INT32_MAX))
        and (message is None or _plain_message(message))
        and (created_at is None or _aware(created_at))
    ):
        return None
    details = _jsonb(get("probe_details", _EMPTY_OBJECT))
    if details is None:
        return None
    return (name, status, latency, details, message, created_at or default_created_at)


def _plain_message(message: object) -> bool:
    # ASCII rules out lone surrogates, which the model refuses; NUL PostgreSQL refuses.
    return (
        type(message) is str
        and 0 < len(message) <= MESSAGE_MAX
        and message.isascii()
        and "\x00" not in message
    )


def _aware(moment: object) -> bool:
    # Only years 1 and 9999 can leave the range once converted to UTC: the model decides those.
    return type(moment) is datetime and moment.utcoffset() is not None and 1 < moment.year < 9999


def _jsonb(details: object) -> bytes | None:
    if details is _EMPTY_OBJECT:
        return _EMPTY_OBJECT
    if type(details) is not dict or not all(type(key) is str for key in details):
        return None
    try:
        encoded = COMPACT_JSON.encode(details).encode()
    # NaN, a lone surrogate, a value JSON cannot hold, nesting too deep to encode.
    except (ValueError, TypeError, RecursionError):
        return None
    if b"\\u0000" in encoded or len(encoded) > DETAILS_MAX_BYTES:
        return None
    return _JSONB_VERSION + encoded


def _from_model(check: HealthCheckIn, default_created_at: datetime) -> Row:
    details = _JSONB_VERSION + COMPACT_JSON.encode(check.probe_details).encode()
    return (
        check.service_name,
        check.status,
        check.latency_ms,
        details,
        check.error_message,
        check.created_at or default_created_at,
    )


def _raise_chunk_errors(chunk: list[CheckInput], offset: int) -> None:
    try:
        _CHUNK.validate_python(chunk)
    except ValidationError as exc:
        raise _reindexed(exc, offset) from None
    raise AssertionError("the model rejected a row of a chunk it then accepted")


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
