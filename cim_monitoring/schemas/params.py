"""Arguments of the repository's queries and transitions, validated before any SQL runs.

Internal: callers pass plain keyword arguments; these models turn bad ones into a
``ValidationError`` that names the argument (e.g. ``end``, ``limit``, ``alert_id``).
"""

from __future__ import annotations

import string
import uuid
from datetime import datetime, timedelta
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
)

from cim_monitoring.schemas.fields import (
    Actor,
    AlertType,
    ServiceName,
    Severity,
    StrictUtcDatetime,
)
from cim_monitoring.schemas.outputs import HealthCheckOut
from cim_monitoring.vocabulary import EPOCH

HISTORY_LIMIT_MAX = 1000
# A chart wider than this is a query for rollups, not for raw-row buckets.
SERIES_BUCKETS_MAX = 10_000
PURGE_BATCH_MAX = 100_000
# Further back than this a dashboard's window reaches past any retention there is to read.
DASHBOARD_WINDOW_MAX = timedelta(days=3660)
# Alerts an id prefix may match in one call: enough to name the candidates of an ambiguous one.
PREFIX_MATCHES_MAX = 100


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be a positive duration")
    return value


# A timedelta instance: ``older_than=30`` would otherwise mean 30 seconds.
PositiveDuration = Annotated[timedelta, Strict(), AfterValidator(_positive)]

# Where an alert id, as ``str(uuid)`` writes it, has its hyphens.
_ID_HYPHENS = frozenset(index for index, char in enumerate(str(uuid.UUID(int=0))) if char == "-")


def _id_prefix(raw: str) -> str:
    text = raw.strip().lower()
    try:
        return uuid.UUID(text).hex  # a whole id, in any spelling uuid.UUID reads
    except ValueError:
        pass
    digits = text.replace("-", "")
    hyphens_in_place = "-" not in text or all(
        (char == "-") == (index in _ID_HYPHENS) for index, char in enumerate(text)
    )
    if not 1 <= len(digits) <= 32 or set(digits) - set(string.hexdigits) or not hyphens_in_place:
        raise ValueError("must be the start of an alert id, e.g. 9b2f0c4e or 9b2f0c4e-6a1d")
    return digits


# The first 1-32 hex digits of an alert id, hyphens allowed where the id has them; a whole id
# in any spelling ``uuid.UUID`` reads. Normalised to lower-case hex digits without hyphens.
AlertIdPrefix = Annotated[str, Strict(), AfterValidator(_id_prefix)]
# A bare string is a sequence of characters, never a list of services.
Services = tuple[ServiceName, ...] | None


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Clock(_Params):
    """``now`` for tests and backfills; None means the transaction's start (SQL ``now()``)."""

    now: StrictUtcDatetime | None = None


class TimeRange(_Params):
    """The half-open range ``[start, end)``."""

    start: StrictUtcDatetime
    end: StrictUtcDatetime

    @field_validator("end")
    @classmethod
    def _after_start(cls, end: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is not None and end <= start:
            raise ValueError("must be after start")
        return end


class LatestParams(_Params):
    services: Services = None


class StatsParams(TimeRange):
    services: Services = None


class IncidentsParams(StatsParams):
    """The window and services of ``incidents``: those of ``service_stats``."""


class ChangesParams(TimeRange):
    service: ServiceName


class HistoryParams(TimeRange):
    service: ServiceName
    limit: Annotated[int, Field(strict=True, ge=1, le=HISTORY_LIMIT_MAX)] = 100
    before: HealthCheckOut | None = None

    @field_validator("before")
    @classmethod
    def _same_service(
        cls, before: HealthCheckOut | None, info: ValidationInfo
    ) -> HealthCheckOut | None:
        service = info.data.get("service")
        if before is not None and service is not None and before.service_name != service:
            raise ValueError(f"is a check of {before.service_name!r}, not of {service!r}")
        return before


class SeriesParams(TimeRange):
    service: ServiceName
    bucket: PositiveDuration

    @field_validator("bucket")
    @classmethod
    def _bounded(cls, bucket: timedelta, info: ValidationInfo) -> timedelta:
        start, end = info.data.get("start"), info.data.get("end")
        if start is None or end is None:
            return bucket
        if (end - start) / bucket > SERIES_BUCKETS_MAX:
            raise ValueError(f"gives more than {SERIES_BUCKETS_MAX} buckets over start..end")
        # Buckets are aligned to the Unix epoch: the first one starts at or before ``start``,
        # and must still be a representable date (year 1 or later).
        try:
            EPOCH + (start - EPOCH) // bucket * bucket
        except OverflowError:
            raise ValueError("puts the first epoch-aligned bucket before year 1") from None
        return bucket


class TransitionParams(Clock):
    alert_id: uuid.UUID
    by: Actor


class ResolveParams(Clock):
    service: ServiceName
    alert_type: AlertType | None = None
    by: Actor


class ActiveParams(_Params):
    service: ServiceName | None = None
    severity: Severity | None = None


class PrefixParams(_Params):
    prefix: AlertIdPrefix
    open_only: Annotated[bool, Strict()] = False
    limit: Annotated[int, Field(strict=True, ge=1, le=PREFIX_MATCHES_MAX)]


class RetentionParams(Clock):
    older_than: PositiveDuration
    rollups_older_than: PositiveDuration


class PurgeParams(RetentionParams):
    batch_size: Annotated[int, Field(strict=True, ge=1, le=PURGE_BATCH_MAX)]


class DashboardParams(Clock):
    window: Annotated[PositiveDuration, Field(le=DASHBOARD_WINDOW_MAX)]
