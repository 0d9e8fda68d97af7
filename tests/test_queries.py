"""latest_status and check_history: results, index use, keyset pagination; both faces."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from faces import Face
from pydantic import ValidationError
from sqlalchemy import text

from cim_monitoring import HealthCheckOut
from workbench.plans import scans

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def test_latest_status_per_service(face: Face) -> None:
    face.record_checks(
        [
            {"service_name": "api", "status": "down", "created_at": T0},
            {"service_name": "api", "status": "healthy", "latency_ms": 9, "created_at": T0 + DAY},
            {"service_name": "db", "status": "degraded", "created_at": T0 - 30 * DAY},
            # Same timestamp as the row before it: the later insert (higher id) wins.
            {"service_name": "db", "status": "down", "latency_ms": 1, "created_at": T0 - 30 * DAY},
        ],
    )
    result = face.latest_status()
    assert [(s.service_name, s.status, s.latency_ms, s.created_at) for s in result] == [
        ("api", "healthy", 9, T0 + DAY),
        ("db", "down", 1, T0 - 30 * DAY),
    ]
    assert [s.service_name for s in face.latest_status(["db", "nope", "db"])] == ["db"]
    assert face.latest_status([]) == []


def test_latest_status_orders_by_code_point_as_service_stats_does_in_any_time_zone(
    face: Face,
) -> None:
    # A linguistic collation would put "a-b" after "ab" and "B" after "a".
    names = ["b", "B", "ab", "a-b", "a_b", "Z", "\u00e9t\u00e9"]
    face.record_checks(
        [
            {"service_name": name, "status": "healthy", "created_at": T0 + index * DAY}
            for index, name in enumerate(names)
        ]
    )
    face.execute(text("SET LOCAL TimeZone = 'America/New_York'"))
    latest = face.latest_status()
    assert [s.service_name for s in latest] == sorted(names)
    stats = face.service_stats(start=T0, end=T0 + 30 * DAY)
    assert [s.service_name for s in stats] == sorted(names)
    assert {s.service_name: s.created_at for s in latest} == {
        name: T0 + index * DAY for index, name in enumerate(names)
    }
    assert all(s.created_at.tzinfo is UTC for s in latest)


def test_latest_status_of_nothing(face: Face) -> None:
    assert face.latest_status() == []


def test_latest_status_rejects_bad_names(face: Face) -> None:
    with pytest.raises(ValidationError, match="services"):
        face.latest_status("api")  # a string is not a list of services
    with pytest.raises(ValidationError, match=r"services\.0"):
        face.latest_status(["a\x00"])


def test_latest_status_reads_one_state_row_per_service_not_the_checks(face: Face) -> None:
    busy = (
        {
            "service_name": f"svc{i % 10}",
            "status": "healthy",
            "created_at": T0 + i * timedelta(seconds=1),
        }
        for i in range(30_000)
    )
    face.record_checks(busy)
    face.record_check({"service_name": "silent", "status": "down", "created_at": T0 - 60 * DAY})
    # A backfill older than the newest check leaves the newest in place.
    face.record_check({"service_name": "svc9", "status": "down", "created_at": T0})
    face.execute(text("ANALYZE service_health_checks"))
    with face.statements() as sent:
        face.latest_status()
        face.latest_status(["svc1", "silent"])
    assert len(sent.statements) == 2
    for statement in sent.statements:
        found = scans(face.plan(statement))
        assert found, statement
        assert all("service_health_state" in scan for scan in found), found
    latest = {s.service_name: s for s in face.latest_status()}
    assert len(latest) == 11
    assert latest["silent"].created_at == T0 - 60 * DAY
    assert (latest["svc9"].status, latest["svc9"].created_at) == (
        "healthy",
        T0 + 29_999 * timedelta(seconds=1),
    )


def test_check_history_range_is_half_open_and_newest_first(face: Face) -> None:
    for hours in (0, 1, 2, 3):
        face.record_check(
            {"service_name": "api", "status": "healthy", "created_at": T0 + timedelta(hours=hours)},
        )
    face.record_check(
        {"service_name": "db", "status": "healthy", "created_at": T0 + timedelta(hours=1)}
    )
    page = face.check_history("api", start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=3))
    assert [c.created_at for c in page] == [T0 + timedelta(hours=2), T0 + timedelta(hours=1)]
    assert {c.service_name for c in page} == {"api"}
    assert face.check_history("api", start=T0, end=T0 + DAY, limit=1)[
        0
    ].created_at == T0 + timedelta(hours=3)


def test_check_history_pages_have_no_gaps_or_repeats(face: Face) -> None:
    rng = random.Random(7)
    # Few distinct timestamps, so many rows share one and only the id breaks the tie.
    rows = [
        {
            "service_name": "api",
            "status": "healthy",
            "created_at": T0 + timedelta(minutes=rng.randrange(20)),
        }
        for _ in range(300)
    ]
    face.record_checks(rows)
    face.record_check({"service_name": "api", "status": "down", "created_at": T0 + DAY})  # outside
    every = face.check_history("api", start=T0, end=T0 + DAY, limit=1000)
    assert len(every) == 300
    assert [(c.created_at, c.id) for c in every] == sorted(
        ((c.created_at, c.id) for c in every), reverse=True
    )

    pages: list[list[HealthCheckOut]] = []
    before = None
    while page := face.check_history("api", start=T0, end=T0 + DAY, limit=7, before=before):
        pages.append(page)
        before = page[-1]
        # A row arriving mid-pagination, newer than the cursor, must not shift later pages.
        face.record_check(
            {"service_name": "api", "status": "healthy", "created_at": T0 + timedelta(minutes=30)},
        )
    seen = [c.id for page in pages for c in page]
    assert seen == [c.id for c in every]
    assert all(len(page) == 7 for page in pages[:-1])


def test_check_history_validates_its_arguments(face: Face) -> None:
    with pytest.raises(ValidationError, match="end"):
        face.check_history("api", start=T0, end=T0)
    with pytest.raises(ValidationError, match="start"):
        face.check_history("api", start=datetime(2024, 1, 1), end=T0 + DAY)
    for limit in (0, 1001):
        with pytest.raises(ValidationError, match="limit"):
            face.check_history("api", start=T0, end=T0 + DAY, limit=limit)
    other = face.record_check({"service_name": "db", "status": "healthy", "created_at": T0})
    with pytest.raises(ValidationError, match="before"):
        face.check_history("api", start=T0, end=T0 + DAY, before=other)
    assert face.check_history("db", start=T0, end=T0 + DAY, limit=1000) == [other]


@pytest.mark.parametrize("argument", ["start", "end"])
@pytest.mark.parametrize(
    "value", [0, 1_704_067_200, 1.5, "2024-01-01T00:00:00+00:00", date(2024, 1, 1)]
)
def test_check_history_takes_only_datetimes(face: Face, argument: str, value: object) -> None:
    # A number is not seconds since 1970, a string is not parsed: both are mistakes.
    face.record_check({"service_name": "api", "status": "healthy", "created_at": T0})
    bounds = {"start": T0 - DAY, "end": T0 + DAY, argument: value}
    with pytest.raises(ValidationError, match=argument):
        face.check_history("api", **bounds)
    assert len(face.check_history("api", start=T0 - DAY, end=T0 + DAY)) == 1
