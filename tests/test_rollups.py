"""Rollups: exactly in step with the raw checks on every insert path, estimated percentiles
within the documented bound, append-only checks, retention past the raw rows."""

from __future__ import annotations

import json
import math
import uuid
from bisect import bisect_right
from datetime import UTC, datetime, timedelta

import pytest
from faces import Face
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, insert, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from cim_monitoring import make_engine, record_check, record_checks
from cim_monitoring.histogram import BOUNDS, RELATIVE_ERROR, best_estimate
from cim_monitoring.models import LATENCY_BUCKETS, ServiceHealthCheck
from cim_monitoring.vocabulary import EPOCH, HEALTH_STATUSES
from workbench.plans import describe, plan_nodes

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
SPAN = 3 * DAY


def reference_rollup(face: Face | Session, grain: timedelta) -> list[tuple[object, ...]]:
    """The rollup rows recomputed in Python from the raw checks."""
    groups: dict[tuple[str, datetime], list[tuple[str, int | None]]] = {}
    for name, status, latency, at in face.execute(
        text("SELECT service_name, status, latency_ms, created_at FROM service_health_checks")
    ):
        key = (name, at - (at - EPOCH) % grain)
        groups.setdefault(key, []).append((status, latency))
    rows = []
    for (name, at), checks in sorted(groups.items()):
        latencies = [ms for _, ms in checks if ms is not None]
        statuses = [status for status, _ in checks]
        histogram = [0] * LATENCY_BUCKETS
        for ms in latencies:
            histogram[bisect_right(BOUNDS, ms) - 1] += 1
        rows.append(
            (
                name,
                at,
                *(statuses.count(status) for status in HEALTH_STATUSES),
                len(latencies),
                min(latencies, default=None),
                max(latencies, default=None),
                sum(latencies),
                histogram,
            )
        )
    return rows


def assert_rollups_match_raw(face: Face | Session) -> None:
    for table, column, grain in (
        ("service_health_hourly", "hour", HOUR),
        ("service_health_daily", "day", DAY),
    ):
        rolled = face.execute(
            text(
                f"SELECT service_name, {column}, healthy, degraded, down, latency_count, "
                f"latency_min, latency_max, latency_sum, latency_histogram FROM {table} "
                "ORDER BY 1, 2"
            )
        )
        assert [tuple(row) for row in rolled] == reference_rollup(face, grain), table


def test_the_bounds_are_those_of_the_migration(session: Session) -> None:
    """The trigger buckets each bound, the latency just below it and the largest latency as
    ``BOUNDS`` does (the repository buckets raw rows with ``BOUNDS`` itself)."""
    assert len(BOUNDS) == LATENCY_BUCKETS
    probes = [*BOUNDS, *(bound - 1 for bound in BOUNDS[1:]), 2**31 - 1]
    session.execute(
        text(
            "INSERT INTO service_health_checks (service_name, status, latency_ms, created_at) "
            "SELECT 'bounds', 'healthy', v, :at FROM unnest(CAST(:v AS int[])) AS v"
        ),
        {"v": probes, "at": T0},
    )
    expected = [0] * LATENCY_BUCKETS
    for bucket in [*range(len(BOUNDS)), *range(len(BOUNDS) - 1), len(BOUNDS) - 1]:
        expected[bucket] += 1
    found = session.execute(
        text("SELECT latency_histogram FROM service_health_hourly WHERE service_name = 'bounds'")
    ).scalar_one()
    assert found == expected


def test_every_bucket_keeps_the_documented_bound() -> None:
    for low, high in zip(BOUNDS, [*(b - 1 for b in BOUNDS[1:]), 2**31 - 1], strict=True):
        estimate = best_estimate(low, high)
        if low:
            assert (estimate - low) / low <= RELATIVE_ERROR
            assert (high - estimate) / high <= RELATIVE_ERROR


def within_bound(estimate: int | None, exact: int | None) -> bool:
    if exact is None or estimate is None:
        return estimate == exact
    return abs(estimate - exact) <= RELATIVE_ERROR * exact


latencies = st.one_of(
    st.none(),
    st.integers(0, 50),
    st.integers(0, 5000),
    st.integers(0, 2**31 - 1),
)
checks = st.lists(
    st.tuples(
        st.sampled_from(["api", "db"]),
        st.sampled_from(HEALTH_STATUSES),
        latencies,
        st.integers(0, int(SPAN.total_seconds()) - 1),
    ),
    min_size=1,
    max_size=60,
)
windows = st.tuples(st.integers(0, int(SPAN / HOUR) * 60), st.integers(1, int(SPAN / HOUR) * 60))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=checks, path=st.sampled_from(["copy", "executemany", "one-by-one"]), window=windows)
def test_rollups_are_exact_and_estimates_within_bound(
    face: Face,
    rows: list[tuple[str, str, int | None, int]],
    path: str,
    window: tuple[int, int],
) -> None:
    values = [
        {
            "service_name": s,
            "status": st_,
            "latency_ms": ms,
            "created_at": T0 + timedelta(seconds=t),
        }
        for s, st_, ms, t in rows
    ]
    start = T0 + timedelta(minutes=window[0])
    end = start + timedelta(minutes=window[1])
    with face.rolled_back():
        if path == "copy":
            half = len(values) // 2
            face.record_checks(values[:half])
            face.record_checks(values[half:])
        elif path == "executemany":
            face.execute(insert(ServiceHealthCheck), values)
        else:
            for value in values:
                face.record_check(value)
        assert_rollups_match_raw(face)
        estimated = face.service_stats(start=start, end=end)
        exact = face.service_stats(start=start, end=end, exact=True)
        series = face.status_series("api", start=start, end=end, bucket=HOUR)
        exact_series = face.status_series("api", start=start, end=end, bucket=HOUR, exact=True)
    assert [s.model_dump(exclude={"p50_ms", "p95_ms", "p99_ms"}) for s in estimated] == [
        s.model_dump(exclude={"p50_ms", "p95_ms", "p99_ms"}) for s in exact
    ]
    for guess, truth in zip(estimated, exact, strict=True):
        for field in ("p50_ms", "p95_ms", "p99_ms"):
            assert within_bound(getattr(guess, field), getattr(truth, field)), field
    assert [b.model_dump(exclude={"p95_ms"}) for b in series] == [
        b.model_dump(exclude={"p95_ms"}) for b in exact_series
    ]
    assert all(within_bound(a.p95_ms, b.p95_ms) for a, b in zip(series, exact_series, strict=True))


def test_daily_buckets_read_the_daily_rollup(face: Face) -> None:
    face.record_checks(
        [
            {
                "service_name": "api",
                "status": "healthy",
                "latency_ms": 10,
                "created_at": T0 + n * HOUR,
            }
            for n in range(72)
        ],
    )
    series = face.status_series("api", start=T0, end=T0 + 3 * DAY, bucket=DAY)
    assert [(b.start, b.total, b.p95_ms) for b in series] == [
        (T0 + n * DAY, 24, 10) for n in range(3)
    ]


def test_health_checks_are_append_only(face: Face) -> None:
    face.record_check({"service_name": "api", "status": "healthy", "created_at": T0})
    with pytest.raises(IntegrityError, match="append-only"), face.rolled_back():
        face.execute(text("UPDATE service_health_checks SET status = 'down'"))


def test_rollups_outlive_purged_raw_rows_until_their_own_retention(face: Face) -> None:
    face.record_checks(
        [
            {
                "service_name": "api",
                "status": "down",
                "latency_ms": 100,
                "created_at": T0 + n * HOUR,
            }
            for n in range(48)
        ],
    )
    now = T0 + 40 * DAY
    result = face.purge_expired(older_than=30 * DAY, now=now)
    assert (result.health_checks, result.rollups) == (48, 0)
    [stats] = face.service_stats(start=T0, end=T0 + 2 * DAY)
    assert (stats.total, stats.down, stats.max_ms) == (48, 48, 100)
    assert face.service_stats(start=T0, end=T0 + 2 * DAY, exact=True) == []

    result = face.purge_expired(older_than=30 * DAY, rollups_older_than=39 * DAY, now=now)
    assert result.rollups == 24 + 1  # the first day: its 24 hours and the day itself
    [stats] = face.service_stats(start=T0, end=T0 + 2 * DAY)
    assert stats.total == 24


def test_a_rollup_bucket_goes_only_once_all_of_it_is_past_retention(face: Face) -> None:
    """``now`` mid-hour: the cut-off (now - rollups_older_than) falls inside an hour and a day,
    and the hour and the day that straddle it stay, as what is left of them is still within
    retention."""
    face.record_checks(
        [{"service_name": "api", "status": "down", "created_at": T0 + n * HOUR} for n in range(48)]
    )
    now = T0 + 40 * DAY + 90 * timedelta(minutes=1)  # the cut-off: T0 + 1 day + 1 h 30 min
    result = face.purge_expired(older_than=30 * DAY, rollups_older_than=39 * DAY, now=now)
    assert result.rollups == 25 + 1  # the hours up to T0 + 1 day, and the first day
    oldest = face.execute(
        text(
            "SELECT (SELECT min(hour) FROM service_health_hourly), "
            "(SELECT min(day) FROM service_health_daily)"
        )
    ).one()
    assert tuple(oldest) == (T0 + DAY + HOUR, T0 + DAY)


def test_an_admin_member_who_is_not_superuser_feeds_the_rollups(face: Face) -> None:
    """Through INSERT and through record_checks, whose COPY is staged under RLS."""
    role = f"cim_test_writer_{uuid.uuid4().hex[:12]}"
    face.execute(text(f"CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS"))
    face.execute(text(f"GRANT monitoring_admin TO {role}"))
    face.execute(text(f"SET LOCAL ROLE {role}"))
    # RLS applies to this role: PostgreSQL refuses it COPY FROM on the table itself.
    assert face.scalar(text("SELECT row_security_active('service_health_checks')")) is True
    face.record_check({"service_name": "api", "status": "healthy", "created_at": T0})
    face.record_checks([{"service_name": "api", "status": "down", "created_at": T0}])
    [stats] = face.service_stats(start=T0, end=T0 + HOUR)
    assert (stats.healthy, stats.down) == (1, 1)
    face.execute(text("RESET ROLE"))
    hourly = face.execute(
        text("SELECT healthy, down FROM service_health_hourly WHERE service_name = 'api'")
    ).one()
    assert tuple(hourly) == (1, 1)


def test_nearest_rank_over_a_histogram_matches_percentile_disc_for_small_values() -> None:
    # Below 10 ms every bucket holds one value: the estimate is exact.
    from cim_monitoring.histogram import percentiles

    values = [0, 1, 1, 3, 9, 9, 9]
    counts = [values.count(v) for v in range(len(BOUNDS))]
    fractions = (0.5, 0.95, 0.99)
    ranks = [max(math.ceil(fraction * len(values)), 1) for fraction in fractions]
    assert percentiles(counts, fractions, minimum=0, maximum=9) == [
        sorted(values)[rank - 1] for rank in ranks
    ]


def test_the_rollup_trigger_ignores_the_inserting_sessions_search_path(
    connection: Connection,
) -> None:
    """A writer whose search_path lacks the schema still feeds the rollups."""
    connection.execute(text("SET LOCAL search_path = pg_catalog"))
    connection.execute(
        text(
            "INSERT INTO public.service_health_checks (service_name, status, created_at) "
            "VALUES ('api', 'down', :at)"
        ),
        {"at": T0},
    )
    connection.execute(text("RESET search_path"))
    hourly = connection.execute(
        text("SELECT down FROM service_health_hourly WHERE service_name = 'api'")
    ).scalar_one()
    assert hourly == 1


def _upserts_of_the_rollup_trigger(connection: Connection) -> list[str]:
    """The statements the trigger runs for statements of up to REPLAN_ROWS rows with the
    plans it caches (the ELSE branch of the deployed function), one per rollup level."""
    body = connection.execute(
        text("SELECT prosrc FROM pg_proc WHERE proname = 'service_health_rollup'")
    ).scalar_one()
    cached_branch = body.split("ELSE", 1)[1].split("END IF;", 1)[0]
    statements = [s.strip() for s in cached_branch.split(";") if s.strip()]
    assert [s.split()[:3] for s in statements] == [
        ["INSERT", "INTO", "public.service_health_hourly"],
        ["INSERT", "INTO", "public.service_health_daily"],
    ], body
    return statements


def _batch(count: int, start: datetime = T0) -> list[dict[str, object]]:
    return [
        {
            "service_name": f"svc-{i % 50:02d}",
            "status": ("healthy", "degraded", "down")[i % 3],
            "latency_ms": None if i % 7 == 0 else (i * 7919) % 3000,
            "created_at": start + timedelta(seconds=i),
        }
        for i in range(count)
    ]


def test_a_rollup_plan_made_for_one_row_stays_linear_for_thousands(
    connection: Connection,
) -> None:
    """PL/pgSQL caches the trigger's plans on a connection's first insert, whatever the later
    sizes. Stand-in for that: each upsert prepared (a generic plan) against a one-row, ANALYZEd
    ``new_rows``, then run by that same plan on 2000 rows. The rows every plan node handles must
    stay linear in the input; a join of the keys with the sparse histogram, planned as a nested
    loop for one row, handled millions (and took 100+ ms for 500 rows)."""
    rows = 2000
    connection.execute(
        text(
            "CREATE TEMPORARY TABLE new_rows ON COMMIT DROP AS "
            "SELECT service_name, status, latency_ms, created_at FROM service_health_checks "
            "WITH NO DATA"
        )
    )
    insert_rows = text(
        "INSERT INTO new_rows SELECT c.service_name, c.status, c.latency_ms, c.created_at "
        "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
        "AS c(service_name text, status text, latency_ms integer, created_at timestamptz)"
    )
    batch = [{**row, "created_at": row["created_at"].isoformat()} for row in _batch(rows)]
    connection.execute(insert_rows, {"rows": json.dumps(batch[:1])})
    connection.execute(text("ANALYZE new_rows"))
    cursor = connection.connection.driver_connection.cursor()
    for n, statement in enumerate(_upserts_of_the_rollup_trigger(connection)):
        cursor.execute(f"PREPARE rollup_{n} AS {statement}")
        cursor.execute(f"EXPLAIN (FORMAT JSON) EXECUTE rollup_{n}")  # plans for one row
    connection.execute(insert_rows, {"rows": json.dumps(batch[1:])})
    for n in range(2):
        cursor.execute(f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) EXECUTE rollup_{n}")
        [[document]] = cursor.fetchall()
        cursor.execute(f"DEALLOCATE rollup_{n}")
        nodes = list(plan_nodes(document[0]["Plan"]))
        scans = [node for node in nodes if node.get("Relation Name") == "new_rows"]
        assert scans, "no scan of new_rows"
        assert all(node["Plan Rows"] == 1 for node in scans), "not the plan made for one row"
        handled = sum(node["Actual Rows"] * node["Actual Loops"] for node in nodes)
        assert handled <= 4 * rows, (handled, [(describe(n), n["Actual Loops"]) for n in nodes])
        types = [node["Node Type"] for node in nodes]
        assert not [t for t in types if "Join" in t or "Nested Loop" in t], types


@pytest.mark.parametrize("first", [1, 2000], ids=["single-first", "batch-first"])
def test_rollups_stay_exact_whatever_a_connection_inserted_first(
    migrated_url: URL, first: int
) -> None:
    """On a fresh connection (fresh cached plans): a first insert of ``first`` rows, then a
    2000-row batch (the cached plans) and one past REPLAN_ROWS (planned for its size)."""
    engine = make_engine(migrated_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
                if first == 1:
                    record_check(session, _batch(1, T0 - DAY)[0])
                else:
                    record_checks(session, _batch(first, T0 - DAY))
                record_checks(session, _batch(2000))
                record_checks(session, _batch(12_000, T0 + DAY))
                assert_rollups_match_raw(session)
            transaction.rollback()
    finally:
        engine.dispose()
