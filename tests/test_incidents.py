"""status_changes and incidents: exact against the raw checks (a window-function reference) on
every insert path, backfills and ties included; still there once the raw rows are purged;
service_stats' incident counts and downtime; bad arguments named; both faces."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any

import pytest
from cases import refused
from faces import Face
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, text

from cim_monitoring import Incident, StatusChange
from cim_monitoring.models import ServiceHealthCheck
from cim_monitoring.vocabulary import HEALTH_STATUSES

T0 = datetime(2024, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
SERVICES = ("api", "db", "llm")

# The changes as the raw rows define them: a check whose status differs from the previous
# check of its service by (created_at, id).
REFERENCE_CHANGES = text(
    """
    SELECT service_name, created_at, previous, status FROM (
        SELECT service_name, created_at, id, status,
               lag(status) OVER (PARTITION BY service_name ORDER BY created_at, id) AS previous
          FROM service_health_checks
    ) AS checks
     WHERE previous IS DISTINCT FROM status
       AND service_name = :service AND created_at >= :start AND created_at < :end
     ORDER BY created_at, id
    """
)


def check(service: str, status: str, at: datetime) -> dict[str, Any]:
    return {"service_name": service, "status": status, "created_at": at}


def reference_changes(
    face: Face, service: str, start: datetime, end: datetime
) -> list[StatusChange]:
    rows = face.execute(REFERENCE_CHANGES, {"service": service, "start": start, "end": end})
    return [
        StatusChange(service_name=name, changed_at=at, from_status=before, to_status=status)
        for name, at, before, status in rows
    ]


def reference_incidents(
    face: Face, start: datetime, end: datetime, services: tuple[str, ...] = SERVICES
) -> list[Incident]:
    """Maximal runs of non-healthy checks, walked over every raw check in (created_at, id)
    order, kept when they overlap [start, end)."""
    now = face.database_now()
    rows = face.execute(
        text(
            "SELECT service_name, created_at, status FROM service_health_checks "
            "ORDER BY service_name, created_at, id"
        )
    ).all()
    found = []
    for name, checks in groupby(rows, key=lambda row: row.service_name):
        opened: tuple[datetime, str] | None = None
        for _, at, status in checks:
            if status == "healthy":
                if opened is not None:
                    found.append((name, opened[0], at, opened[1]))
                opened = None
            elif opened is None:
                opened = (at, status)
            elif status == "down":
                opened = (opened[0], "down")
        if opened is not None:
            found.append((name, opened[0], None, opened[1]))
    horizon = min(end, now)
    return [
        Incident(
            service_name=name,
            started_at=started,
            ended_at=ended,
            worst_status=worst,
            duration=max((ended or horizon) - started, timedelta(0)),
        )
        for name, started, ended, worst in found
        if name in services and started < end and (ended is None or ended > start)
    ]


def write(face: Face, path: str, checks: list[dict[str, Any]]) -> None:
    if path == "record_checks":
        face.record_checks(checks)
    elif path == "executemany":
        face.execute(insert(ServiceHealthCheck), checks)
    else:
        for one in checks:
            face.record_check(one)


# Minutes in a short span: many checks share a timestamp, and later batches land before,
# between and after the checks of earlier ones (backfills).
batches = st.lists(
    st.tuples(
        st.sampled_from(["record_checks", "executemany", "one-by-one"]),
        st.lists(
            st.tuples(
                st.sampled_from(SERVICES), st.sampled_from(HEALTH_STATUSES), st.integers(0, 12)
            ),
            min_size=1,
            max_size=25,
        ),
    ),
    min_size=1,
    max_size=5,
)
windows = st.tuples(st.integers(-1, 13), st.integers(1, 14))


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=batches, window=windows)
def test_changes_and_incidents_match_the_raw_checks(
    face: Face,
    batches: list[tuple[str, list[tuple[str, str, int]]]],
    window: tuple[int, int],
) -> None:
    start = T0 + window[0] * MINUTE
    end = start + window[1] * MINUTE
    with face.rolled_back():
        for path, rows in batches:
            write(face, path, [check(name, status, T0 + m * MINUTE) for name, status, m in rows])
        for service in SERVICES:
            assert face.status_changes(service, start=start, end=end) == reference_changes(
                face, service, start, end
            ), service
        expected = reference_incidents(face, start, end)
        assert face.incidents(start=start, end=end) == expected
        assert face.incidents(start=start, end=end, services=["db", "nope"]) == [
            incident for incident in expected if incident.service_name == "db"
        ]
        assert face.incidents(start=T0 - DAY, end=T0 + DAY) == reference_incidents(
            face, T0 - DAY, T0 + DAY
        )
        # service_stats sums the same incidents in SQL: their count, and their overlap with
        # the window (T0 is long past: now() does not cut it).
        stats = face.service_stats(start=start, end=end, services=SERVICES)
        assert {s.service_name: (s.incidents, s.downtime_seconds) for s in stats} == {
            service: (
                len(mine := [i for i in expected if i.service_name == service]),
                pytest.approx(
                    sum(
                        (min(i.ended_at or end, end) - max(i.started_at, start)).total_seconds()
                        for i in mine
                    )
                ),
            )
            for service in SERVICES
        }
        # Unnamed, the services with checks in the window, from the unfiltered statement.
        every = face.service_stats(start=start, end=end)
        assert every == [named for named in stats if named.total]


def test_an_incident_that_ended_at_start_is_not_reported_one_ongoing_is(face: Face) -> None:
    face.record_checks(
        [
            check("api", "healthy", T0),
            check("api", "degraded", T0 + MINUTE),
            check("api", "down", T0 + 2 * MINUTE),
            check("api", "healthy", T0 + 3 * MINUTE),  # ends it
            check("api", "degraded", T0 + 10 * MINUTE),  # ongoing
        ]
    )
    first, ongoing = face.incidents(start=T0, end=T0 + HOUR)
    assert (first.started_at, first.ended_at, first.worst_status) == (
        T0 + MINUTE,
        T0 + 3 * MINUTE,
        "down",
    )
    assert first.duration == 2 * MINUTE
    assert (ongoing.started_at, ongoing.ended_at, ongoing.worst_status) == (
        T0 + 10 * MINUTE,
        None,
        "degraded",
    )
    assert ongoing.duration == 50 * MINUTE, "up to the end of the window"
    # Ended exactly at start: no overlap. Begun exactly at end: none either.
    assert face.incidents(start=T0 + 3 * MINUTE, end=T0 + 10 * MINUTE) == []
    [same, _] = face.incidents(start=T0 + 3 * MINUTE - timedelta(microseconds=1), end=T0 + HOUR)
    assert same == first
    # An ongoing incident's duration runs to the database's now() when the window reaches past it.
    now = face.database_now()
    [_, until_now] = face.incidents(start=T0, end=now + DAY)
    assert until_now.duration == now - (T0 + 10 * MINUTE)


def test_an_incident_begun_before_start_keeps_its_start_and_worst_status(face: Face) -> None:
    face.record_checks(
        [
            check("db", "healthy", T0),
            check("db", "degraded", T0 + MINUTE),
            check("db", "down", T0 + 2 * MINUTE),
            check("db", "degraded", T0 + 3 * MINUTE),
            check("db", "healthy", T0 + 20 * MINUTE),
        ]
    )
    [incident] = face.incidents(start=T0 + 10 * MINUTE, end=T0 + 11 * MINUTE)
    assert incident == Incident(
        service_name="db",
        started_at=T0 + MINUTE,
        ended_at=T0 + 20 * MINUTE,
        worst_status="down",
        duration=19 * MINUTE,
    )
    # A window before the end: the end and the worst status are the whole incident's.
    [early] = face.incidents(start=T0, end=T0 + 2 * MINUTE)
    assert early == incident
    assert [c.to_status for c in face.status_changes("db", start=T0, end=T0 + HOUR)] == [
        "healthy",
        "degraded",
        "down",
        "degraded",
        "healthy",
    ]
    assert face.status_changes("db", start=T0, end=T0 + HOUR)[0].from_status is None


def test_changes_and_incidents_outlive_the_purged_raw_checks(face: Face) -> None:
    face.record_checks(
        [
            check("api", "healthy", T0),
            check("api", "down", T0 + HOUR),
            check("api", "healthy", T0 + 2 * HOUR),
            check("db", "healthy", T0),
            check("db", "degraded", T0 + 3 * HOUR),
        ]
    )
    window = {"start": T0, "end": T0 + DAY}
    changes = face.status_changes("api", **window)
    found = face.incidents(**window)
    assert len(changes) == 3
    assert [(i.service_name, i.ended_at) for i in found] == [
        ("api", T0 + 2 * HOUR),
        ("db", None),
    ]
    purged = face.purge_expired(older_than=30 * DAY, now=T0 + 40 * DAY)
    assert purged.health_checks == 5
    assert face.scalar(text("SELECT count(*) FROM service_health_checks")) == 0
    assert face.status_changes("api", **window) == changes
    assert face.incidents(**window) == found
    assert face.incidents(**window, services=["db"]) == found[1:]


def test_service_stats_count_incidents_and_downtime_in_the_window(face: Face) -> None:
    face.record_checks(
        [
            check("api", "down", T0 - HOUR),  # begun before the window
            check("api", "healthy", T0 + 30 * MINUTE),
            check("api", "degraded", T0 + 2 * HOUR),
            check("api", "healthy", T0 + 2 * HOUR + 15 * MINUTE),
            check("api", "down", T0 + 3 * HOUR + 50 * MINUTE),  # runs past the window's end
            check("db", "healthy", T0 + HOUR),
        ]
    )
    for exact in (False, True):
        api, db, quiet = face.service_stats(
            start=T0, end=T0 + 4 * HOUR, services=["api", "db", "quiet"], exact=exact
        )
        assert (api.incidents, api.downtime_seconds) == (3, (30 + 15 + 10) * 60.0)
        assert (db.incidents, db.downtime_seconds) == (0, 0.0)
        assert (quiet.total, quiet.incidents, quiet.downtime_seconds) == (0, 0, 0.0)
    # Downtime stops at the database's now(), however far the window reaches.
    now = face.database_now()
    [api] = face.service_stats(start=now - HOUR, end=now + DAY, services=["api"])
    assert (api.incidents, api.downtime_seconds) == (1, HOUR.total_seconds())


def test_moments_are_utc_whatever_the_sessions_time_zone(face: Face) -> None:
    face.record_checks([check("api", "down", T0), check("api", "healthy", T0 + HOUR)])
    face.execute(text("SET LOCAL TimeZone = 'America/New_York'"))
    [change, _] = face.status_changes("api", start=T0, end=T0 + DAY)
    [incident] = face.incidents(start=T0, end=T0 + DAY)
    [latest] = face.latest_status()
    for moment in (change.changed_at, incident.started_at, incident.ended_at, latest.created_at):
        assert moment is not None
        assert moment.tzinfo is UTC
    assert (incident.started_at, latest.created_at) == (T0, T0 + HOUR)


@pytest.mark.parametrize(
    ("call", "arguments", "field"),
    [
        ("status_changes", {"service": "", "start": T0, "end": T0 + DAY}, ("service",)),
        ("status_changes", {"service": "api", "start": T0, "end": T0}, ("end",)),
        (
            "status_changes",
            {"service": "api", "start": T0.replace(tzinfo=None), "end": T0 + DAY},
            ("start",),
        ),
        ("incidents", {"start": T0, "end": T0 - DAY}, ("end",)),
        ("incidents", {"start": T0, "end": T0 + DAY, "services": "api"}, ("services",)),
        ("incidents", {"start": T0, "end": T0 + DAY, "services": ["a\x00"]}, ("services", 0)),
        ("incidents", {"start": 0, "end": T0 + DAY}, ("start",)),
    ],
    ids=[
        "empty-service",
        "empty-range",
        "naive-start",
        "end-before-start",
        "string-services",
        "nul-in-name",
        "int-start",
    ],
)
def test_bad_arguments_are_refused_naming_them(
    face: Face, call: str, arguments: dict[str, Any], field: tuple[int | str, ...]
) -> None:
    assert refused(lambda: getattr(face, call)(**arguments)) == [field]


def test_an_application_role_reads_them_and_the_jit_setting_is_left_as_it_was(
    face: Face,
) -> None:
    """As production does: a non-superuser member of monitoring_admin, under RLS."""
    role = f"cim_test_reader_{uuid.uuid4().hex[:12]}"
    face.execute(text(f"CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS"))
    face.execute(text(f"GRANT monitoring_admin TO {role}"))
    face.execute(text(f"SET LOCAL ROLE {role}"))
    assert face.scalar(text("SELECT row_security_active('service_health_changes')")) is True
    face.record_checks([check("api", "healthy", T0), check("api", "down", T0 + HOUR)])
    face.execute(text("SET LOCAL jit = on"))
    [incident] = face.incidents(start=T0, end=T0 + DAY)
    assert (incident.started_at, incident.ended_at) == (T0 + HOUR, None)
    assert face.scalar(text("SELECT current_setting('jit')")) == "on"
    face.execute(text("SET LOCAL jit = off"))
    assert len(face.status_changes("api", start=T0, end=T0 + DAY)) == 2
    [stats] = face.service_stats(start=T0, end=T0 + DAY)
    assert (stats.incidents, stats.downtime_seconds) == (1, 23 * HOUR.total_seconds())
    assert face.scalar(text("SELECT current_setting('jit')")) == "off"
    assert [s.status for s in face.latest_status()] == ["down"]
