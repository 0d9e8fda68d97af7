"""trusted_rows: outputs built from our own rows without validation are the outputs
validation builds, moments in UTC included, and stay frozen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel, ValidationError

from cim_monitoring import HealthCheckOut, Incident, ServiceStats, ServiceStatus, StatusChange
from cim_monitoring.schemas.outputs import trusted_rows

PARIS = datetime(2024, 6, 1, 14, 30, tzinfo=ZoneInfo("Europe/Paris"))
ROWS: list[tuple[type[BaseModel], tuple[object, ...]]] = [
    (ServiceStatus, ("api", "down", None, PARIS)),
    (ServiceStatus, ("db", "healthy", 12, datetime(2024, 1, 1, tzinfo=UTC))),
    (HealthCheckOut, (7, "api", "down", None, {"code": 503, "body": ["x"]}, "timeout", PARIS)),
    (HealthCheckOut, (8, "db", "healthy", 3, {}, None, datetime(2024, 1, 1, tzinfo=UTC))),
    (StatusChange, ("api", PARIS, None, "down")),
    (ServiceStats, ("api", 4, 2, 1, 1, 0.5, 10, 20, 30, 40, 2, 12.5)),
    (ServiceStats, ("idle", 0, 0, 0, 0, None, None, None, None, None, 0, 0.0)),
    (Incident, ("api", PARIS, None, "degraded", timedelta(minutes=5))),
    (
        Incident,
        ("api", PARIS, PARIS.astimezone(timezone(timedelta(hours=-5))), "down", timedelta(0)),
    ),
]


@pytest.mark.parametrize(("model", "row"), ROWS)
def test_a_trusted_row_is_the_validated_row(
    model: type[BaseModel], row: tuple[object, ...]
) -> None:
    [trusted] = trusted_rows(model, [row])
    validated = model.model_validate(dict(zip(model.model_fields, row, strict=True)))
    assert type(trusted) is model
    assert trusted == validated
    assert trusted.model_dump() == validated.model_dump()
    assert trusted.model_dump_json() == validated.model_dump_json()
    assert repr(trusted) == repr(validated)
    assert trusted.model_fields_set == validated.model_fields_set
    for name, value in trusted.model_dump().items():
        if isinstance(value, datetime):
            assert value.tzinfo is UTC, name


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2024-01-01 09:00:00+00", datetime(2024, 1, 1, 9, tzinfo=UTC)),
        ("2024-01-01 09:00:00.5+00", datetime(2024, 1, 1, 9, 0, 0, 500000, tzinfo=UTC)),
        ("0999-12-31 23:59:59.000001+00", datetime(999, 12, 31, 23, 59, 59, 1, tzinfo=UTC)),
    ],
)
def test_a_moment_as_utc_text_is_an_aware_utc_datetime(text: str, moment: datetime) -> None:
    # What a query reading a moment through utc_text() loads (latest_status does).
    [trusted] = trusted_rows(ServiceStatus, [("db", "healthy", 12, text)])
    assert trusted == ServiceStatus(
        service_name="db", status="healthy", latency_ms=12, created_at=moment
    )
    assert trusted.created_at.tzinfo is UTC


def test_trusted_outputs_stay_frozen_and_copies_do_not_share_their_fields() -> None:
    first, second = trusted_rows(ServiceStatus, [ROWS[0][1], ROWS[1][1]])
    with pytest.raises(ValidationError, match="frozen"):
        first.status = "healthy"  # type: ignore[misc]
    copy = first.model_copy(update={"status": "healthy"})
    assert (copy.status, first.status) == ("healthy", "down")
    assert second.model_fields_set == set(ServiceStatus.model_fields)
    assert hash(first) != hash(second)
    assert trusted_rows(ServiceStatus, []) == []
