"""service_stats and status_series: counts, uptime, exact percentiles (``exact=True``), buckets.

The default path, rollups with estimated percentiles, is tested in test_rollups.py."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from faces import Face
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cim_monitoring import ServiceStats
from cim_monitoring.vocabulary import EPOCH, HEALTH_STATUSES

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def nearest_rank(values: list[int], fraction: float) -> int | None:
    """percentile_disc: the first value whose cumulative share reaches ``fraction``."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)), 1) - 1]


def test_service_stats_counts_uptime_and_latency(face: Face) -> None:
    latencies = [10, 20, 30, 40, None]
    face.record_checks(
        [
            *(
                {"service_name": "api", "status": "healthy", "latency_ms": ms, "created_at": T0}
                for ms in latencies
            ),
            {"service_name": "api", "status": "degraded", "latency_ms": 900, "created_at": T0},
            {"service_name": "api", "status": "down", "created_at": T0 + HOUR - MINUTE},
            {
                "service_name": "api",
                "status": "down",
                "latency_ms": 5000,
                "created_at": T0 + HOUR,
            },  # outside
            {"service_name": "db", "status": "down", "created_at": T0 + MINUTE},
        ],
    )
    api, db = face.service_stats(start=T0, end=T0 + HOUR, exact=True)
    assert api == ServiceStats(
        service_name="api",
        total=7,
        healthy=5,
        degraded=1,
        down=1,
        uptime=5 / 7,  # degraded is not up
        p50_ms=30,
        p95_ms=900,
        p99_ms=900,
        max_ms=900,
        # Degraded at T0 (inserted after the healthy checks of T0), down since: ongoing.
        incidents=1,
        downtime_seconds=3600.0,
    )
    # No check of db had a latency: it still has counts, but no latency figures.
    assert (db.total, db.down, db.uptime, db.p50_ms, db.max_ms) == (1, 1, 0.0, None, None)
    assert (db.incidents, db.downtime_seconds) == (1, 59 * 60.0)


def test_service_stats_lists_requested_services_even_without_checks(face: Face) -> None:
    face.record_checks([{"service_name": "api", "status": "healthy", "created_at": T0}])
    result = face.service_stats(start=T0, end=T0 + HOUR, services=["quiet", "api", "quiet"])
    assert [s.service_name for s in result] == ["api", "quiet"]
    assert result[1] == ServiceStats(
        service_name="quiet",
        total=0,
        healthy=0,
        degraded=0,
        down=0,
        uptime=None,
        p50_ms=None,
        p95_ms=None,
        p99_ms=None,
        max_ms=None,
        incidents=0,
        downtime_seconds=0.0,
    )
    assert face.service_stats(start=T0 + HOUR, end=T0 + 2 * HOUR) == []


def test_service_stats_validates_its_arguments(face: Face) -> None:
    with pytest.raises(ValidationError, match="end"):
        face.service_stats(start=T0, end=T0 - HOUR)
    with pytest.raises(ValidationError, match="services"):
        face.service_stats(start=T0, end=T0 + HOUR, services="api")


checks = st.lists(
    st.tuples(st.sampled_from(HEALTH_STATUSES), st.none() | st.integers(0, 2**31 - 1)),
    min_size=1,
    max_size=120,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=checks)
def test_service_stats_matches_a_python_reference(
    face: Face, rows: list[tuple[str, int | None]]
) -> None:
    with face.rolled_back():
        face.record_checks(
            (
                {"service_name": "api", "status": s, "latency_ms": ms, "created_at": T0}
                for s, ms in rows
            ),
        )
        [stats] = face.service_stats(start=T0, end=T0 + HOUR, exact=True)
    latencies = [ms for _, ms in rows if ms is not None]
    statuses = [s for s, _ in rows]
    assert (stats.total, stats.healthy, stats.degraded, stats.down) == (
        len(rows),
        statuses.count("healthy"),
        statuses.count("degraded"),
        statuses.count("down"),
    )
    assert stats.uptime == statuses.count("healthy") / len(rows)
    assert (stats.p50_ms, stats.p95_ms, stats.p99_ms) == tuple(
        nearest_rank(latencies, p) for p in (0.5, 0.95, 0.99)
    )
    assert stats.max_ms == (max(latencies) if latencies else None)


def test_status_series_buckets_are_epoch_aligned_and_complete(face: Face) -> None:
    face.record_checks(
        [
            {
                "service_name": "api",
                "status": "healthy",
                "latency_ms": 5,
                "created_at": T0 + 10 * MINUTE,
            },  # before start
            {
                "service_name": "api",
                "status": "healthy",
                "latency_ms": 10,
                "created_at": T0 + 20 * MINUTE,
            },
            {"service_name": "api", "status": "down", "created_at": T0 + 29 * MINUTE},
            {
                "service_name": "api",
                "status": "degraded",
                "latency_ms": 70,
                "created_at": T0 + 75 * MINUTE,
            },
            {
                "service_name": "api",
                "status": "healthy",
                "latency_ms": 30,
                "created_at": T0 + 89 * MINUTE,
            },
            {
                "service_name": "api",
                "status": "down",
                "created_at": T0 + 90 * MINUTE,
            },  # at end: excluded
            {
                "service_name": "db",
                "status": "down",
                "created_at": T0 + 50 * MINUTE,
            },  # other service
        ],
    )
    series = face.status_series(
        "api", start=T0 + 15 * MINUTE, end=T0 + 90 * MINUTE, bucket=30 * MINUTE
    )
    assert [(b.start, b.total, b.healthy, b.degraded, b.down, b.p95_ms) for b in series] == [
        (T0, 2, 1, 0, 1, 10),  # the first bucket begins before start; only [start, ...) counts
        (T0 + 30 * MINUTE, 0, 0, 0, 0, None),
        (T0 + 60 * MINUTE, 2, 1, 1, 0, 70),
    ]
    assert all(b.start.tzinfo is UTC for b in series)


def test_status_series_of_an_unknown_service_is_all_empty_buckets(face: Face) -> None:
    bucket = timedelta(minutes=7)
    series = face.status_series("nobody", start=T0, end=T0 + HOUR, bucket=bucket)
    first = T0 - (T0 - EPOCH) % bucket
    expected = [first + i * bucket for i in range(20) if first + i * bucket < T0 + HOUR]
    assert first == T0 - 6 * MINUTE
    assert [b.start for b in series] == expected
    assert {(b.total, b.p95_ms) for b in series} == {(0, None)}


def test_status_series_validates_its_arguments(face: Face) -> None:
    for bucket in (timedelta(0), -MINUTE, timedelta(microseconds=1)):
        with pytest.raises(ValidationError, match="bucket"):
            face.status_series("api", start=T0, end=T0 + HOUR, bucket=bucket)
    with pytest.raises(ValidationError, match="end"):
        face.status_series("api", start=T0, end=T0, bucket=MINUTE)
    with pytest.raises(ValidationError, match="service"):
        face.status_series("", start=T0, end=T0 + HOUR, bucket=MINUTE)


@pytest.mark.parametrize("bucket", [60, 900.0, "PT15M", "00:15:00"])
def test_status_series_bucket_must_be_a_timedelta(face: Face, bucket: object) -> None:
    # 60 would otherwise be 60 seconds, and "PT15M" a parsed ISO duration.
    with pytest.raises(ValidationError, match="bucket"):
        face.status_series("api", start=T0, end=T0 + HOUR, bucket=bucket)


@pytest.mark.parametrize("function", ["service_stats", "status_series"])
@pytest.mark.parametrize(("argument", "value"), [("start", 0), ("end", "2024-01-01T01:00:00Z")])
def test_stats_take_only_datetimes(face: Face, function: str, argument: str, value: object) -> None:
    bounds = {"start": T0, "end": T0 + HOUR, argument: value}
    series = {"service": "api", "bucket": MINUTE} if function == "status_series" else {}
    with pytest.raises(ValidationError, match=argument):
        getattr(face, function)(**series, **bounds)
