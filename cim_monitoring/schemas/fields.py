"""Reusable field types: the database CHECKs restated in Python, plus what PostgreSQL cannot store.

Validating here means bad input is reported with the field's name before any SQL runs, instead
of surfacing as a constraint violation (or a driver crash, for NUL characters) mid-transaction.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, Field, Strict, StringConstraints

from cim_monitoring.vocabulary import (
    ALERT_TYPE_PATTERN,
    CONTROL_CHARACTERS_PATTERN,
    DETAILS_MAX_BYTES,
    DETAILS_MAX_DEPTH,
    HEALTH_STATUSES,
    INT32_MAX,
    MESSAGE_MAX,
    SERVICE_NAME_MAX,
    SEVERITIES,
)

_CONTROL = re.compile(CONTROL_CHARACTERS_PATTERN)
# Built once: json.dumps with non-default options would construct an encoder per call.
COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold NUL. (Lone surrogates never get here: pydantic refuses them
    # wherever a string has length constraints, which every text field has.)
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _no_control_characters(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _one_of(allowed: tuple[str, ...]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return AfterValidator(check)


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01 00:00+01:00 is in year 0 in UTC
        raise ValueError("is out of range once converted to UTC") from None


def _check_structure(value: dict[str, Any]) -> None:
    """Refuse what JSON would silently change or PostgreSQL cannot store, at any depth.

    Iterative: a recursive walk would itself hit Python's recursion limit on hostile input.
    """
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("must not contain NUL characters in keys or values")
        elif isinstance(item, dict | list | tuple):
            if depth > DETAILS_MAX_DEPTH:
                raise ValueError(f"must not nest more than {DETAILS_MAX_DEPTH} levels deep")
            if isinstance(item, dict):
                for key, child in item.items():
                    # json.dumps would turn 1, True or None keys into strings: not identical.
                    if not isinstance(key, str):
                        raise ValueError(f"must have only string keys, got {key!r}")
                    pending.append((key, depth))
                    pending.append((child, depth + 1))
            else:
                pending.extend((child, depth + 1) for child in item)


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    if not value:
        return value
    _check_structure(value)
    try:
        serialized = COMPACT_JSON.encode(value)
        size = len(serialized.encode())
    except ValueError as exc:  # NaN/Infinity, or a lone surrogate (UnicodeEncodeError)
        raise ValueError(f"must be storable as JSON: {exc}") from None
    except TypeError as exc:
        raise ValueError(f"must contain only JSON values: {exc}") from None
    if size > DETAILS_MAX_BYTES:
        raise ValueError(f"must serialize to at most {DETAILS_MAX_BYTES} bytes, got {size}")
    return value


Message = Annotated[
    str, StringConstraints(min_length=1, max_length=MESSAGE_MAX), AfterValidator(_storable)
]
ServiceName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=SERVICE_NAME_MAX),
    AfterValidator(_storable),
    AfterValidator(_no_control_characters),
]
# Who acknowledged or resolved an alert: the same short single-line name rules.
Actor = ServiceName
AlertType = Annotated[str, StringConstraints(pattern=ALERT_TYPE_PATTERN)]
HealthStatus = Annotated[str, _one_of(HEALTH_STATUSES)]
Severity = Annotated[str, _one_of(SEVERITIES)]
# Strict: True, 1.5 and "12" are not latencies; the bound is the integer column's.
LatencyMs = Annotated[int, Field(strict=True, ge=0, le=INT32_MAX)]
# Marks the fields that hold a moment: rows read back without validation convert them too.
TO_UTC = AfterValidator(_to_utc)
UtcDatetime = Annotated[AwareDatetime, TO_UTC]
# An argument of a function call, not a field of a JSON-like record: a datetime instance, never
# parsed from a number or a string (``start=0`` is not 1970).
StrictUtcDatetime = Annotated[AwareDatetime, Strict(), TO_UTC]
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]
