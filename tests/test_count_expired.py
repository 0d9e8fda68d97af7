"""count_expired: what purge_expired would delete (checks, resolved alerts, rollup rows), by the
same rules, deleting nothing; both faces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cases import refused
from faces import Face
from sqlalchemy import text

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
# Neither midnight nor a whole hour: rollups go only when their whole hour or day has expired.
NOW = datetime(2024, 3, 1, 10, 30, tzinfo=UTC)
CUTOFF = NOW - 30 * DAY
ROLLUP_CUTOFF = NOW - 400 * DAY
TABLES = (
    "service_health_checks",
    "alert_events",
    "service_health_hourly",
    "service_health_daily",
    "service_health_state",
    "service_health_changes",
)


def rows(face: Face) -> dict[str, int]:
    return {table: face.scalar(text(f"SELECT count(*) FROM {table}")) for table in TABLES}


def seed(face: Face) -> None:
    moments = [
        ROLLUP_CUTOFF - 2 * DAY,  # its hour and its day are both older than the rollup cut-off
        ROLLUP_CUTOFF - HOUR,  # its hour is, its day is not
        ROLLUP_CUTOFF + HOUR,
        CUTOFF - DAY,
        CUTOFF,  # not before the cut-off: kept
        NOW - HOUR,
    ]
    face.record_checks(
        {"service_name": "api", "status": "healthy", "created_at": at} for at in moments
    )
    # Silent since before both cut-offs: its state goes, and its first change (the newer one
    # still tells its status); its two hours and two days of rollups are older than theirs.
    face.record_checks(
        {"service_name": "gone", "status": status, "created_at": ROLLUP_CUTOFF - days * DAY}
        for status, days in (("down", 2), ("healthy", 1))
    )
    for alert_type, resolved_at in (
        ("old", CUTOFF - DAY),
        ("recent", CUTOFF + DAY),
        ("open", None),
    ):
        raised = face.raise_alert(
            {"service_name": "api", "alert_type": alert_type, "severity": "info", "message": "m"},
            now=CUTOFF - 10 * DAY,
        )
        if resolved_at is not None:
            face.resolve_alert(raised.id, by="ops", now=resolved_at)


def test_counts_exactly_what_purge_expired_then_deletes(face: Face) -> None:
    seed(face)
    before = rows(face)
    counted = face.count_expired(now=NOW)
    assert counted.model_dump() == {
        "cutoff": CUTOFF,
        "health_checks": 6,
        "alerts": 1,
        "rollups": 7,
        # One running total for each expired hourly rollup.
        "totals": 4,
        "changes": 1,
        "states": 1,
        "oldest_check_at": ROLLUP_CUTOFF - 2 * DAY,
    }
    assert rows(face) == before, "counting deletes nothing"
    purged = face.purge_expired(now=NOW)
    assert purged.model_dump() == counted.model_dump(exclude={"oldest_check_at"})
    after = face.count_expired(now=NOW)
    assert after.model_dump(exclude={"cutoff", "oldest_check_at"}) == dict.fromkeys(
        ("health_checks", "alerts", "rollups", "changes", "states", "totals"), 0
    )
    assert after.oldest_check_at is None


@pytest.mark.parametrize(
    "retention",
    [
        {"older_than": DAY, "rollups_older_than": DAY},
        {"older_than": 45 * DAY, "rollups_older_than": 401 * DAY},
    ],
    ids=["short", "long"],
)
def test_other_retentions_agree_with_the_purge(face: Face, retention: dict[str, Any]) -> None:
    seed(face)
    counted = face.count_expired(now=NOW, **retention)
    purged = face.purge_expired(now=NOW, **retention)
    assert purged.model_dump() == counted.model_dump(exclude={"oldest_check_at"})
    assert counted.health_checks + counted.rollups > 0


def test_now_defaults_to_the_transactions_clock(face: Face) -> None:
    counted = face.count_expired(older_than=HOUR)
    assert counted.cutoff == face.database_now() - HOUR


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"older_than": 30}, "older_than"),
        ({"rollups_older_than": timedelta(0)}, "rollups_older_than"),
    ],
)
def test_bad_arguments_are_refused_naming_them(
    face: Face, arguments: dict[str, Any], field: str
) -> None:
    assert refused(lambda: face.count_expired(**arguments)) == [(field,)]
