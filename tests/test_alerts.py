"""The alert lifecycle: dedup on raise (also under concurrency), transitions, listings; both
faces."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from cases import ALERT, BAD_ALERT_FIELDS
from faces import Face, FaceKind
from pydantic import ValidationError
from scratch import migrated_engine
from sqlalchemy import Engine, func, select

from cim_monitoring import (
    AlertIn,
    AlertNotFound,
    AlertOut,
    InvalidTransition,
    MonitoringError,
)
from cim_monitoring.models import AlertEvent

if TYPE_CHECKING:
    from conftest import PostgresServer

T0 = datetime(2024, 1, 1, tzinfo=UTC)
THREADS = 8


@pytest.fixture(scope="module")
def scratch_engine(pg_server: PostgresServer) -> Iterator[Engine]:
    yield from migrated_engine(pg_server)


def alert(**changes: Any) -> dict[str, Any]:
    return {**ALERT, **changes}


def count(face: Face) -> int:
    return face.execute(select(func.count()).select_from(AlertEvent)).scalar_one()


def test_raise_alert_opens_an_alert(face: Face) -> None:
    raised = face.raise_alert(AlertIn(**alert(details={"probe": "http", "code": 503})))
    now = face.execute(select(func.now())).scalar_one()
    assert isinstance(raised, AlertOut)
    assert raised.model_dump(exclude={"id"}) == {
        "service_name": "api",
        "alert_type": "service_down",
        "severity": "critical",
        "status": "active",
        "message": "m",
        "details": {"probe": "http", "code": 503},
        "occurrence_count": 1,
        "last_seen_at": now,
        "created_at": now,
        "acknowledged_at": None,
        "acknowledged_by": None,
        "resolved_at": None,
        "resolved_by": None,
    }
    assert face.scalar(select(AlertEvent.status).where(AlertEvent.id == raised.id)) == "active"


def test_raising_again_bumps_the_open_alert(face: Face) -> None:
    first = face.raise_alert(alert(severity="warning", message="slow"), now=T0)
    again = face.raise_alert(
        alert(severity="critical", message="slower", details={"p95": 900}),
        now=T0 + timedelta(minutes=1),
    )
    calmer = face.raise_alert(
        alert(severity="info", message="better"), now=T0 + timedelta(minutes=2)
    )
    assert first.id == again.id == calmer.id
    assert count(face) == 1
    assert (calmer.occurrence_count, calmer.created_at, calmer.last_seen_at) == (
        3,
        T0,
        T0 + timedelta(minutes=2),
    )
    assert again.severity == "critical"
    assert calmer.severity == "critical"  # severity escalates, never drops while open
    assert (calmer.message, calmer.details) == ("better", {})  # the latest raise describes it
    # A raise arriving out of order (older timestamp) does not move last_seen_at back.
    late = face.raise_alert(alert(), now=T0)
    assert late.last_seen_at == T0 + timedelta(minutes=2)


def test_dedup_is_per_service_and_type_and_only_while_open(face: Face) -> None:
    first = face.raise_alert(alert())
    other_type = face.raise_alert(alert(alert_type="high_latency"))
    other_service = face.raise_alert(alert(service_name="db"))
    assert len({first.id, other_type.id, other_service.id}) == 3
    face.acknowledge_alert(first.id, by="ops")
    bumped = face.raise_alert(alert())
    assert (bumped.id, bumped.status, bumped.occurrence_count) == (first.id, "acknowledged", 2)
    face.resolve_alert(first.id, by="ops")
    reopened = face.raise_alert(alert())
    assert reopened.id != first.id
    assert (reopened.status, reopened.occurrence_count) == ("active", 1)
    assert count(face) == 4


@pytest.mark.parametrize(("field", "value", "fragment"), BAD_ALERT_FIELDS)
def test_raise_alert_rejects_and_writes_nothing(
    face: Face, field: str, value: Any, fragment: str
) -> None:
    face.raise_alert(alert(alert_type="kept"))
    with pytest.raises(ValidationError) as caught:
        face.raise_alert(alert(**{field: value}))
    assert caught.value.errors()[0]["loc"] == (field,)
    assert fragment in str(caught.value)
    assert count(face) == 1
    assert face.raise_alert(alert(alert_type="kept")).occurrence_count == 2


def test_legal_transitions(face: Face) -> None:
    acked = face.acknowledge_alert(face.raise_alert(alert()).id, by="alice", now=T0)
    assert (acked.status, acked.acknowledged_at, acked.acknowledged_by) == (
        "acknowledged",
        T0,
        "alice",
    )
    done = face.resolve_alert(str(acked.id), by="bob", now=T0 + timedelta(hours=1))
    assert (done.status, done.resolved_at, done.resolved_by) == (
        "resolved",
        T0 + timedelta(hours=1),
        "bob",
    )
    assert (done.acknowledged_at, done.acknowledged_by) == (T0, "alice")

    direct = face.resolve_alert(face.raise_alert(alert(alert_type="other")).id, by="carol")
    now = face.execute(select(func.now())).scalar_one()
    assert (direct.status, direct.resolved_at, direct.acknowledged_at) == ("resolved", now, None)


@pytest.mark.parametrize(
    ("setup", "attempt", "current"),
    [
        (["acknowledge"], "acknowledge", "acknowledged"),
        (["resolve"], "acknowledge", "resolved"),
        (["acknowledge", "resolve"], "acknowledge", "resolved"),
        (["resolve"], "resolve", "resolved"),
        (["acknowledge", "resolve"], "resolve", "resolved"),
    ],
)
def test_illegal_transitions(face: Face, setup: list[str], attempt: str, current: str) -> None:
    alert_id = face.raise_alert(alert()).id
    for step in setup:
        getattr(face, f"{step}_alert")(alert_id, by="ops")
    before = face.execute(select(AlertEvent.__table__).where(AlertEvent.id == alert_id)).one()
    with pytest.raises(InvalidTransition) as caught:
        getattr(face, f"{attempt}_alert")(alert_id, by="mallory")
    assert isinstance(caught.value, MonitoringError)
    assert (caught.value.alert_id, caught.value.current) == (alert_id, current)
    assert str(alert_id) in str(caught.value)
    assert current in str(caught.value)
    after = face.execute(select(AlertEvent.__table__).where(AlertEvent.id == alert_id)).one()
    assert after == before  # unchanged, and the transaction is still usable


@pytest.mark.parametrize("name", ["acknowledge_alert", "resolve_alert"])
def test_unknown_and_malformed_alert_ids(face: Face, name: str) -> None:
    action = getattr(face, name)
    missing = uuid.uuid4()
    with pytest.raises(AlertNotFound) as caught:
        action(missing, by="ops")
    assert caught.value.alert_id == missing
    assert str(missing) in str(caught.value)
    for malformed in ("42", "not-a-uuid", ""):
        with pytest.raises(ValidationError, match="alert_id"):
            action(malformed, by="ops")
    alert_id = face.raise_alert(alert()).id
    for bad_by in ("", "x" * 101, "ops\n", "op\x00s"):
        with pytest.raises(ValidationError, match="by"):
            action(alert_id, by=bad_by)
    assert face.active_alerts()[0].status == "active"


@pytest.mark.parametrize("now", [0, 1_704_067_200.0, "2024-01-01T00:00:00Z", datetime(2024, 1, 1)])
def test_now_must_be_an_aware_datetime(face: Face, now: object) -> None:
    opened = face.raise_alert(alert())
    with pytest.raises(ValidationError, match="now"):
        face.raise_alert(alert(), now=now)
    for name in ("acknowledge_alert", "resolve_alert"):
        with pytest.raises(ValidationError, match="now"):
            getattr(face, name)(opened.id, by="ops", now=now)
    with pytest.raises(ValidationError, match="now"):
        face.resolve_alerts("api", now=now)
    [still] = face.active_alerts()
    assert (still.id, still.status, still.occurrence_count) == (opened.id, "active", 1)


def test_resolve_alerts_of_a_recovered_service(face: Face) -> None:
    older = face.raise_alert(alert(alert_type="service_down"), now=T0)
    newer = face.raise_alert(alert(alert_type="high_latency"), now=T0 + timedelta(minutes=1))
    face.acknowledge_alert(newer.id, by="ops")
    only_latency = face.raise_alert(alert(service_name="db", alert_type="high_latency"))
    face.raise_alert(alert(service_name="db", alert_type="service_down"))

    resolved = face.resolve_alerts("api", now=T0 + timedelta(hours=1))
    assert [a.id for a in resolved] == [newer.id, older.id]
    assert {(a.status, a.resolved_by, a.resolved_at) for a in resolved} == {
        ("resolved", "system", T0 + timedelta(hours=1))
    }
    assert face.resolve_alerts("api") == []

    [latency] = face.resolve_alerts("db", alert_type="high_latency", by="watchdog")
    assert (latency.id, latency.resolved_by) == (only_latency.id, "watchdog")
    assert [(a.service_name, a.alert_type) for a in face.active_alerts()] == [
        ("db", "service_down")
    ]
    with pytest.raises(ValidationError, match="alert_type"):
        face.resolve_alerts("db", alert_type="Service Down")


def test_active_alerts_newest_first_with_filters(face: Face) -> None:
    a = face.raise_alert(alert(alert_type="a", severity="info"), now=T0)
    b = face.raise_alert(alert(alert_type="b", severity="critical"), now=T0 + timedelta(minutes=1))
    c = face.raise_alert(
        alert(service_name="db", severity="critical"), now=T0 + timedelta(minutes=2)
    )
    d = face.raise_alert(alert(alert_type="d"), now=T0 + timedelta(minutes=3))
    face.acknowledge_alert(a.id, by="ops")
    face.resolve_alert(d.id, by="ops")
    assert [x.id for x in face.active_alerts()] == [c.id, b.id, a.id]
    assert [x.id for x in face.active_alerts(service="api")] == [b.id, a.id]
    assert [x.id for x in face.active_alerts(severity="critical")] == [c.id, b.id]
    assert [x.id for x in face.active_alerts(service="api", severity="info")] == [a.id]
    assert face.active_alerts(service="nobody") == []
    with pytest.raises(ValidationError, match="severity"):
        face.active_alerts(severity="fatal")


def test_log_lines_are_structured_and_carry_no_payload(
    face: Face, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cim_monitoring")
    secret = "details-payload-never-logged"
    raised = face.raise_alert(alert(details={"token": secret}))
    face.raise_alert(alert(details={"token": secret}))
    face.resolve_alert(raised.id, by="ops")
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert levels == [
        ("INFO", "alert raised"),
        ("DEBUG", "alert raised again"),
        ("INFO", "alert resolved"),
    ]
    first = caplog.records[0]
    assert (first.service, first.alert_id) == ("api", str(raised.id))  # type: ignore[attr-defined]
    assert all(secret not in str(vars(r)) for r in caplog.records)


def test_concurrent_raisers_share_one_alert(face_kind: FaceKind, scratch_engine: Engine) -> None:
    engine = face_kind.engine(scratch_engine.url)
    service = f"svc-{uuid.uuid4().hex[:8]}"
    results = face_kind.concurrently(engine, THREADS, "raise_alert", alert(service_name=service))
    assert all(isinstance(r, AlertOut) for r in results)
    assert len({r.id for r in results}) == 1
    assert sorted(r.occurrence_count for r in results) == list(range(1, THREADS + 1))
    with face_kind.begin(engine) as face:
        [open_alert] = face.active_alerts(service=service)
        assert open_alert.occurrence_count == THREADS


def test_concurrent_acknowledgers_exactly_one_wins(
    face_kind: FaceKind, scratch_engine: Engine
) -> None:
    engine = face_kind.engine(scratch_engine.url)
    with face_kind.begin(engine) as face:
        alert_id = face.raise_alert(alert(service_name=f"svc-{uuid.uuid4().hex[:8]}")).id
    results = face_kind.concurrently(engine, THREADS, "acknowledge_alert", alert_id, by="ops")
    assert sum(isinstance(r, AlertOut) for r in results) == 1
    assert sum(isinstance(r, InvalidTransition) for r in results) == THREADS - 1
