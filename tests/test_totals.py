"""service_stats read from the running totals: exact counts and extremes, percentiles within
bound, for windows whose base row is gone (purged with the rollups), for services that begin
inside a window, and after a backfill into a service's purged past.

The totals themselves are held to their definition on every insert path in
test_service_state.py (``assert_in_step``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from faces import Face
from test_rollups import within_bound

NOW = datetime(2024, 3, 10, tzinfo=UTC)  # midnight: the cut-offs fall on whole days
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
PERCENTILES = ("p50_ms", "p95_ms", "p99_ms")


def seed(face: Face) -> None:
    """'api' every 20 minutes for ten days, 'late' from two days ago, 'gone' only long ago."""
    rows = [
        {
            "service_name": "api",
            "status": ("healthy", "healthy", "degraded", "down")[step % 4],
            "latency_ms": None if step % 7 == 0 else (step * 37) % 900,
            "created_at": NOW - 10 * DAY + step * timedelta(minutes=20),
        }
        for step in range(10 * 72)
    ]
    rows += [
        {
            "service_name": "late",
            "status": "healthy",
            "latency_ms": 5 + step % 50,
            "created_at": NOW - 2 * DAY + step * timedelta(minutes=13),
        }
        for step in range(200)
    ]
    rows += [
        {
            "service_name": "gone",
            "status": "down",
            "latency_ms": 3000,
            "created_at": NOW - 9 * DAY + timedelta(minutes=minute),
        }
        for minute in range(0, 300, 7)
    ]
    face.record_checks(rows)


def assert_estimates_exact(
    face: Face, start: datetime, end: datetime, services: list[str] | None = None
) -> None:
    estimated = face.service_stats(start=start, end=end, services=services)
    exact = face.service_stats(start=start, end=end, services=services, exact=True)
    assert [s.model_dump(exclude=set(PERCENTILES)) for s in estimated] == [
        s.model_dump(exclude=set(PERCENTILES)) for s in exact
    ]
    for guess, truth in zip(estimated, exact, strict=True):
        for field in PERCENTILES:
            assert within_bound(getattr(guess, field), getattr(truth, field)), field


WINDOWS = [
    (NOW - 9 * DAY - 17 * timedelta(minutes=1), NOW - HOUR + timedelta(minutes=7)),
    (NOW - 3 * DAY + timedelta(minutes=41), NOW - DAY - timedelta(minutes=3)),
    (NOW - 2 * DAY - timedelta(minutes=30), NOW),
    (NOW - 7 * DAY, NOW - 4 * DAY),
]


@pytest.mark.parametrize(("start", "end"), WINDOWS)
def test_windows_agree_with_the_raw_rows(face: Face, start: datetime, end: datetime) -> None:
    with face.rolled_back():
        seed(face)
        assert_estimates_exact(face, start, end)


@pytest.mark.parametrize(("start", "end"), WINDOWS)
def test_windows_reaching_past_purged_totals_count_what_is_left(
    face: Face, start: datetime, end: datetime
) -> None:
    """Raw rows, rollups and totals purged at the same whole day: a window that begins
    before it has no base row and counts exactly the checks left."""
    with face.rolled_back():
        seed(face)
        purged = face.purge_expired(now=NOW, older_than=5 * DAY, rollups_older_than=5 * DAY)
        assert purged.totals > 0
        assert_estimates_exact(face, start, end)


def test_a_backfill_before_a_services_oldest_total_keeps_windows_exact(face: Face) -> None:
    with face.rolled_back():
        seed(face)
        face.purge_expired(now=NOW, older_than=5 * DAY, rollups_older_than=5 * DAY)
        face.record_checks(
            [
                {
                    "service_name": "api",
                    "status": "down",
                    "latency_ms": 4321,
                    "created_at": NOW - 6 * DAY + timedelta(minutes=minute),
                }
                for minute in (0, 1, 70)
            ]
        )
        for start, end in WINDOWS:
            assert_estimates_exact(face, start, end)


def test_a_window_ending_after_the_newest_check_of_its_day_counts_its_last_hour(
    face: Face,
) -> None:
    """With nothing from end to midnight, end's partial hour and day are read from the totals
    and the day's rollup, not raw rows; a check landing there switches back to raw rows."""
    start, end = NOW - 3 * DAY + timedelta(minutes=5), NOW - 4 * HOUR - timedelta(minutes=30)
    with face.rolled_back():
        seed(face)
        # 'late' checked last at 19:07, inside end's hour; 'api' goes on until midnight.
        for services in (["late"], ["late", "gone"], None):
            assert_estimates_exact(face, start, end, services)
        face.record_checks(
            [{"service_name": "late", "status": "down", "latency_ms": 1, "created_at": end}]
        )
        assert_estimates_exact(face, start, end, ["late"])
        [late] = face.service_stats(start=start, end=end, services=["late"])
        assert late.down == 0
