"""Input validation: every rule, with an error that names the field. No database needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cases import ALERT, BAD_ALERT_FIELDS, BAD_CHECK_FIELDS, CHECK
from pydantic import ValidationError

from cim_monitoring import AlertIn, HealthCheckIn, ServiceHealthCheck
from cim_monitoring.schemas import DETAILS_MAX_BYTES
from cim_monitoring.schemas.params import (
    HistoryParams,
    PurgeParams,
    SeriesParams,
    StatsParams,
    TransitionParams,
)
from cim_monitoring.vocabulary import HEALTH_CHECK_COLUMNS

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def assert_names(error: ValidationError, field: str, fragment: str) -> None:
    [line] = error.errors()
    assert line["loc"][-1] == field
    assert fragment in line["msg"]
    assert field in str(error)


@pytest.mark.parametrize(("field", "value", "fragment"), BAD_CHECK_FIELDS)
def test_health_check_rejects(field: str, value: Any, fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        HealthCheckIn.model_validate({**CHECK, field: value})
    assert_names(caught.value, field, fragment)


@pytest.mark.parametrize(("field", "value", "fragment"), BAD_ALERT_FIELDS)
def test_alert_rejects(field: str, value: Any, fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AlertIn.model_validate({**ALERT, field: value})
    assert_names(caught.value, field, fragment)


def test_health_check_accepts_edges_and_converts_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    check = HealthCheckIn(
        service_name="x" * 100,
        status="down",
        latency_ms=2**31 - 1,
        probe_details={"nested": {"list": [1, 2.5, None, True, "é ✓ \\u0000"]}},
        error_message="timeout",
        created_at=datetime(2024, 1, 1, 2, 0, tzinfo=plus_two),
    )
    assert check.created_at == T0
    assert check.created_at is not None
    assert check.created_at.tzinfo is UTC
    assert HealthCheckIn.model_validate(CHECK).probe_details == {}


def test_details_cap_is_on_the_serialized_utf8_size() -> None:
    overhead = len('{"k":""}')
    fits = {"k": "x" * (DETAILS_MAX_BYTES - overhead)}
    assert AlertIn.model_validate({**ALERT, "details": fits}).details == fits
    with pytest.raises(ValidationError, match="65537"):
        AlertIn.model_validate(
            {**ALERT, "details": {"k": "x" * (DETAILS_MAX_BYTES - overhead + 1)}}
        )
    # Three bytes per character in UTF-8: a third as many characters already exceed the cap.
    with pytest.raises(ValidationError, match="bytes"):
        AlertIn.model_validate({**ALERT, "details": {"k": "✓" * (DETAILS_MAX_BYTES // 3 + 1)}})


@pytest.mark.parametrize(
    ("model", "kwargs", "field"),
    [
        (StatsParams, {"start": T0, "end": T0}, "end"),
        (StatsParams, {"start": T0, "end": T0 - timedelta(seconds=1)}, "end"),
        (StatsParams, {"start": datetime(2024, 1, 1), "end": T0}, "start"),
        (StatsParams, {"start": T0, "end": T0 + timedelta(1), "services": "api"}, "services"),
        (StatsParams, {"start": T0, "end": T0 + timedelta(1), "services": ["a\x00"]}, 0),
        (
            SeriesParams,
            {"start": T0, "end": T0 + timedelta(1), "service": "a", "bucket": timedelta(0)},
            "bucket",
        ),
        (
            SeriesParams,
            {"start": T0, "end": T0 + timedelta(1), "service": "a", "bucket": timedelta(-1)},
            "bucket",
        ),
        (
            SeriesParams,
            {"start": T0, "end": T0 + timedelta(1), "service": "a", "bucket": timedelta(seconds=1)},
            "bucket",
        ),
        (
            HistoryParams,
            {"start": T0, "end": T0 + timedelta(1), "service": "a", "limit": 0},
            "limit",
        ),
        (
            HistoryParams,
            {"start": T0, "end": T0 + timedelta(1), "service": "a", "limit": 1001},
            "limit",
        ),
        (
            HistoryParams,
            {"start": T0, "end": T0 + timedelta(1), "service": "", "limit": 1},
            "service",
        ),
        (TransitionParams, {"alert_id": "not-a-uuid", "by": "me"}, "alert_id"),
        (TransitionParams, {"alert_id": 12, "by": "me"}, "alert_id"),
        (TransitionParams, {"alert_id": "00000000-0000-0000-0000-000000000000", "by": ""}, "by"),
        (
            TransitionParams,
            {"alert_id": "00000000-0000-0000-0000-000000000000", "by": "x" * 101},
            "by",
        ),
        (
            TransitionParams,
            {"alert_id": "00000000-0000-0000-0000-000000000000", "by": "a\x1bb"},
            "by",
        ),
        (
            TransitionParams,
            {
                "alert_id": "00000000-0000-0000-0000-000000000000",
                "by": "a",
                "now": datetime(2024, 1, 1),
            },
            "now",
        ),
        (PurgeParams, {"older_than": timedelta(0), "batch_size": 1}, "older_than"),
        (PurgeParams, {"older_than": timedelta(1), "batch_size": 0}, "batch_size"),
        (PurgeParams, {"older_than": timedelta(1), "batch_size": 1.0}, "batch_size"),
    ],
)
def test_arguments_are_validated(model: type, kwargs: dict[str, Any], field: str | int) -> None:
    with pytest.raises(ValidationError) as caught:
        model(**kwargs)
    assert any(line["loc"] and line["loc"][-1] == field for line in caught.value.errors())


def test_a_health_check_s_columns_are_declared_once() -> None:
    """The input model and the table (but its identity) hold the vocabulary's columns, in its
    order: the COPY, its staging table and the benchmarks' SQL are built from that list."""
    assert tuple(HealthCheckIn.model_fields) == HEALTH_CHECK_COLUMNS
    writable = [
        column.name for column in ServiceHealthCheck.__table__.columns if not column.identity
    ]
    assert tuple(writable) == HEALTH_CHECK_COLUMNS
