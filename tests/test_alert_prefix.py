"""alerts_by_id_prefix: the alerts whose id starts with a prefix, a range of the primary key;
both faces."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from cases import refused
from faces import Face
from sqlalchemy import text

ACTIVE_LOW = "abcd0000-0000-4000-8000-000000000001"
RESOLVED = "abcd0000-0000-4000-8000-000000000002"
ACTIVE_HIGH = "abcdffff-ffff-4fff-bfff-ffffffffffff"  # the last id "abcd" can start
JUST_ABOVE = "abce0000-0000-4000-8000-000000000000"
JUST_BELOW = "abccffff-ffff-4fff-bfff-ffffffffffff"
IDS = (ACTIVE_LOW, RESOLVED, ACTIVE_HIGH, JUST_ABOVE, JUST_BELOW)


@pytest.fixture
def seeded(face: Face) -> Face:
    for number, alert_id in enumerate(IDS):
        resolved = alert_id == RESOLVED
        face.execute(
            text(
                "INSERT INTO alert_events (id, service_name, alert_type, severity, message, "
                "status, resolved_at, resolved_by) VALUES (:id, 'api', :type, 'info', 'm', "
                ":status, CASE WHEN :resolved THEN now() END, CASE WHEN :resolved THEN 'ops' END)"
            ),
            {
                "id": alert_id,
                "type": f"kind_{number}",
                "status": "resolved" if resolved else "active",
                "resolved": resolved,
            },
        )
    return face


def found(face: Face, prefix: str, **options: Any) -> list[str]:
    return [str(alert.id) for alert in face.alerts_by_id_prefix(prefix, **options)]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("abcd", [ACTIVE_LOW, RESOLVED, ACTIVE_HIGH]),
        ("ABCD0000-0000", [ACTIVE_LOW, RESOLVED]),
        ("abcd0000000040008000", [ACTIVE_LOW, RESOLVED]),
        ("abcdf", [ACTIVE_HIGH]),
        ("abce", [JUST_ABOVE]),
        ("abcc", [JUST_BELOW]),
        ("abc", [JUST_BELOW, ACTIVE_LOW, RESOLVED, ACTIVE_HIGH, JUST_ABOVE]),
        ("abcf", []),
        (RESOLVED, [RESOLVED]),
        (f"urn:uuid:{RESOLVED}", [RESOLVED]),
        (f"  {RESOLVED.upper()} ", [RESOLVED]),
    ],
)
def test_every_alert_whose_id_starts_so_in_id_order(
    seeded: Face, prefix: str, expected: list[str]
) -> None:
    assert found(seeded, prefix) == expected


def test_open_only_and_limit(seeded: Face) -> None:
    assert found(seeded, "abcd", open_only=True) == [ACTIVE_LOW, ACTIVE_HIGH]
    assert found(seeded, "abcd0000", open_only=True) == [ACTIVE_LOW]
    assert found(seeded, "abcd", limit=2) == [ACTIVE_LOW, RESOLVED]
    assert found(seeded, "abcd", limit=1, open_only=True) == [ACTIVE_LOW]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"prefix": ""}, "prefix"),
        ({"prefix": "abcg"}, "prefix"),
        ({"prefix": "abcd-0000"}, "prefix"),  # a hyphen where an id has none
        ({"prefix": "a" * 33}, "prefix"),
        ({"prefix": uuid.UUID(ACTIVE_LOW)}, "prefix"),  # a UUID object is no prefix
        ({"prefix": "abcd", "limit": 0}, "limit"),
        ({"prefix": "abcd", "limit": 101}, "limit"),
        ({"prefix": "abcd", "open_only": "yes"}, "open_only"),
    ],
)
def test_bad_arguments_are_refused_naming_them(
    face: Face, arguments: dict[str, Any], field: str
) -> None:
    assert refused(lambda: face.alerts_by_id_prefix(**arguments)) == [(field,)]
