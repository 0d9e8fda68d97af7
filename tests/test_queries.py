"""latest_status and check_history: results, index use, keyset pagination."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.orm import Session

from cim_monitoring import (
    HealthCheckOut,
    check_history,
    latest_status,
    record_check,
    record_checks,
)
from cim_monitoring.repository.queries import _LATEST_ALL, _LATEST_OF

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def test_latest_status_per_service(session: Session) -> None:
    record_checks(
        session,
        [
            {"service_name": "api", "status": "down", "created_at": T0},
            {"service_name": "api", "status": "healthy", "latency_ms": 9, "created_at": T0 + DAY},
            {"service_name": "db", "status": "degraded", "created_at": T0 - 30 * DAY},
            # Same timestamp as the row before it: the later insert (higher id) wins.
            {"service_name": "db", "status": "down", "latency_ms": 1, "created_at": T0 - 30 * DAY},
        ],
    )
    result = latest_status(session)
    assert [(s.service_name, s.status, s.latency_ms, s.created_at) for s in result] == [
        ("api", "healthy", 9, T0 + DAY),
        ("db", "down", 1, T0 - 30 * DAY),
    ]
    assert [s.service_name for s in latest_status(session, ["db", "nope", "db"])] == ["db"]
    assert latest_status(session, []) == []


def test_latest_status_of_nothing(session: Session) -> None:
    assert latest_status(session) == []


def test_latest_status_rejects_bad_names(session: Session) -> None:
    with pytest.raises(ValidationError, match="services"):
        latest_status(session, "api")  # a string is not a list of services
    with pytest.raises(ValidationError, match=r"services\.0"):
        latest_status(session, ["a\x00"])


def _plan(session: Session, sql: str, **params: object) -> str:
    return "\n".join(session.execute(text("EXPLAIN " + sql), params).scalars())


def test_latest_status_walks_the_index_even_for_a_long_silent_service(session: Session) -> None:
    busy = (
        {
            "service_name": f"svc{i % 10}",
            "status": "healthy",
            "created_at": T0 + i * timedelta(seconds=1),
        }
        for i in range(30_000)
    )
    record_checks(session, busy)
    record_check(session, {"service_name": "silent", "status": "down", "created_at": T0 - 60 * DAY})
    session.execute(text("ANALYZE service_health_checks"))
    for sql, params in [
        (str(_LATEST_ALL), {}),
        (str(_LATEST_OF), {"services": ["svc1", "silent"]}),
    ]:
        plan = _plan(session, sql, **params)
        assert "Seq Scan" not in plan, plan
        assert "ix_service_health_checks_created_at" not in plan, plan
        assert "ix_service_health_checks_service_name_created_at" in plan
    latest = {s.service_name: s for s in latest_status(session)}
    assert len(latest) == 11
    assert latest["silent"].created_at == T0 - 60 * DAY
    assert latest["svc9"].created_at == T0 + 29_999 * timedelta(seconds=1)


def test_check_history_range_is_half_open_and_newest_first(session: Session) -> None:
    for hours in (0, 1, 2, 3):
        record_check(
            session,
            {"service_name": "api", "status": "healthy", "created_at": T0 + timedelta(hours=hours)},
        )
    record_check(
        session, {"service_name": "db", "status": "healthy", "created_at": T0 + timedelta(hours=1)}
    )
    page = check_history(session, "api", start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=3))
    assert [c.created_at for c in page] == [T0 + timedelta(hours=2), T0 + timedelta(hours=1)]
    assert {c.service_name for c in page} == {"api"}
    assert check_history(session, "api", start=T0, end=T0 + DAY, limit=1)[
        0
    ].created_at == T0 + timedelta(hours=3)


def test_check_history_pages_have_no_gaps_or_repeats(session: Session) -> None:
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
    record_checks(session, rows)
    record_check(
        session, {"service_name": "api", "status": "down", "created_at": T0 + DAY}
    )  # outside
    every = check_history(session, "api", start=T0, end=T0 + DAY, limit=1000)
    assert len(every) == 300
    assert [(c.created_at, c.id) for c in every] == sorted(
        ((c.created_at, c.id) for c in every), reverse=True
    )

    pages: list[list[HealthCheckOut]] = []
    before = None
    while page := check_history(session, "api", start=T0, end=T0 + DAY, limit=7, before=before):
        pages.append(page)
        before = page[-1]
        # A row arriving mid-pagination, newer than the cursor, must not shift later pages.
        record_check(
            session,
            {"service_name": "api", "status": "healthy", "created_at": T0 + timedelta(minutes=30)},
        )
    seen = [c.id for page in pages for c in page]
    assert seen == [c.id for c in every]
    assert all(len(page) == 7 for page in pages[:-1])


def test_check_history_validates_its_arguments(session: Session) -> None:
    with pytest.raises(ValidationError, match="end"):
        check_history(session, "api", start=T0, end=T0)
    with pytest.raises(ValidationError, match="start"):
        check_history(session, "api", start=datetime(2024, 1, 1), end=T0 + DAY)
    for limit in (0, 1001):
        with pytest.raises(ValidationError, match="limit"):
            check_history(session, "api", start=T0, end=T0 + DAY, limit=limit)
    other = record_check(session, {"service_name": "db", "status": "healthy", "created_at": T0})
    with pytest.raises(ValidationError, match="before"):
        check_history(session, "api", start=T0, end=T0 + DAY, before=other)
    assert check_history(session, "db", start=T0, end=T0 + DAY, limit=1000) == [other]
