"""The alert lifecycle: dedup on raise (also under concurrency), transitions, listings."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from cases import ALERT, BAD_ALERT_FIELDS
from pydantic import ValidationError
from scratch import migrated_engine
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from cim_monitoring import (
    AlertIn,
    AlertNotFound,
    AlertOut,
    InvalidTransition,
    MonitoringError,
    acknowledge_alert,
    active_alerts,
    make_session_factory,
    raise_alert,
    resolve_alert,
    resolve_alerts,
)
from cim_monitoring.models import AlertEvent

if TYPE_CHECKING:
    from conftest import PostgresServer

T0 = datetime(2024, 1, 1, tzinfo=UTC)
THREADS = 8
R = TypeVar("R")


@pytest.fixture(scope="module")
def scratch_engine(pg_server: PostgresServer) -> Iterator[Engine]:
    yield from migrated_engine(pg_server)


def alert(**changes: Any) -> dict[str, Any]:
    return {**ALERT, **changes}


def count(session: Session) -> int:
    return session.execute(select(func.count()).select_from(AlertEvent)).scalar_one()


def test_raise_alert_opens_an_alert(session: Session) -> None:
    raised = raise_alert(session, AlertIn(**alert(details={"probe": "http", "code": 503})))
    now = session.execute(select(func.now())).scalar_one()
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
    assert session.get(AlertEvent, raised.id) is not None


def test_raising_again_bumps_the_open_alert(session: Session) -> None:
    first = raise_alert(session, alert(severity="warning", message="slow"), now=T0)
    again = raise_alert(
        session,
        alert(severity="critical", message="slower", details={"p95": 900}),
        now=T0 + timedelta(minutes=1),
    )
    calmer = raise_alert(
        session, alert(severity="info", message="better"), now=T0 + timedelta(minutes=2)
    )
    assert first.id == again.id == calmer.id
    assert count(session) == 1
    assert (calmer.occurrence_count, calmer.created_at, calmer.last_seen_at) == (
        3,
        T0,
        T0 + timedelta(minutes=2),
    )
    assert again.severity == "critical"
    assert calmer.severity == "critical"  # severity escalates, never drops while open
    assert (calmer.message, calmer.details) == ("better", {})  # the latest raise describes it
    # A raise arriving out of order (older timestamp) does not move last_seen_at back.
    late = raise_alert(session, alert(), now=T0)
    assert late.last_seen_at == T0 + timedelta(minutes=2)


def test_dedup_is_per_service_and_type_and_only_while_open(session: Session) -> None:
    first = raise_alert(session, alert())
    other_type = raise_alert(session, alert(alert_type="high_latency"))
    other_service = raise_alert(session, alert(service_name="db"))
    assert len({first.id, other_type.id, other_service.id}) == 3
    acknowledge_alert(session, first.id, by="ops")
    bumped = raise_alert(session, alert())
    assert (bumped.id, bumped.status, bumped.occurrence_count) == (first.id, "acknowledged", 2)
    resolve_alert(session, first.id, by="ops")
    reopened = raise_alert(session, alert())
    assert reopened.id != first.id
    assert (reopened.status, reopened.occurrence_count) == ("active", 1)
    assert count(session) == 4


@pytest.mark.parametrize(("field", "value", "fragment"), BAD_ALERT_FIELDS)
def test_raise_alert_rejects_and_writes_nothing(
    session: Session, field: str, value: Any, fragment: str
) -> None:
    raise_alert(session, alert(alert_type="kept"))
    with pytest.raises(ValidationError) as caught:
        raise_alert(session, alert(**{field: value}))
    assert caught.value.errors()[0]["loc"] == (field,)
    assert fragment in str(caught.value)
    assert count(session) == 1
    assert raise_alert(session, alert(alert_type="kept")).occurrence_count == 2


def test_legal_transitions(session: Session) -> None:
    acked = acknowledge_alert(session, raise_alert(session, alert()).id, by="alice", now=T0)
    assert (acked.status, acked.acknowledged_at, acked.acknowledged_by) == (
        "acknowledged",
        T0,
        "alice",
    )
    done = resolve_alert(session, str(acked.id), by="bob", now=T0 + timedelta(hours=1))
    assert (done.status, done.resolved_at, done.resolved_by) == (
        "resolved",
        T0 + timedelta(hours=1),
        "bob",
    )
    assert (done.acknowledged_at, done.acknowledged_by) == (T0, "alice")

    direct = resolve_alert(session, raise_alert(session, alert(alert_type="other")).id, by="carol")
    now = session.execute(select(func.now())).scalar_one()
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
def test_illegal_transitions(
    session: Session, setup: list[str], attempt: str, current: str
) -> None:
    actions: dict[str, Callable[..., AlertOut]] = {
        "acknowledge": acknowledge_alert,
        "resolve": resolve_alert,
    }
    alert_id = raise_alert(session, alert()).id
    for step in setup:
        actions[step](session, alert_id, by="ops")
    before = session.execute(select(AlertEvent.__table__).where(AlertEvent.id == alert_id)).one()
    with pytest.raises(InvalidTransition) as caught:
        actions[attempt](session, alert_id, by="mallory")
    assert isinstance(caught.value, MonitoringError)
    assert (caught.value.alert_id, caught.value.current) == (alert_id, current)
    assert str(alert_id) in str(caught.value)
    assert current in str(caught.value)
    after = session.execute(select(AlertEvent.__table__).where(AlertEvent.id == alert_id)).one()
    assert after == before  # unchanged, and the transaction is still usable


@pytest.mark.parametrize("action", [acknowledge_alert, resolve_alert])
def test_unknown_and_malformed_alert_ids(session: Session, action: Callable[..., AlertOut]) -> None:
    missing = uuid.uuid4()
    with pytest.raises(AlertNotFound) as caught:
        action(session, missing, by="ops")
    assert caught.value.alert_id == missing
    assert str(missing) in str(caught.value)
    for malformed in ("42", "not-a-uuid", ""):
        with pytest.raises(ValidationError, match="alert_id"):
            action(session, malformed, by="ops")
    alert_id = raise_alert(session, alert()).id
    for bad_by in ("", "x" * 101, "ops\n", "op\x00s"):
        with pytest.raises(ValidationError, match="by"):
            action(session, alert_id, by=bad_by)
    assert active_alerts(session)[0].status == "active"


def test_resolve_alerts_of_a_recovered_service(session: Session) -> None:
    older = raise_alert(session, alert(alert_type="service_down"), now=T0)
    newer = raise_alert(session, alert(alert_type="high_latency"), now=T0 + timedelta(minutes=1))
    acknowledge_alert(session, newer.id, by="ops")
    only_latency = raise_alert(session, alert(service_name="db", alert_type="high_latency"))
    raise_alert(session, alert(service_name="db", alert_type="service_down"))

    resolved = resolve_alerts(session, "api", now=T0 + timedelta(hours=1))
    assert [a.id for a in resolved] == [newer.id, older.id]
    assert {(a.status, a.resolved_by, a.resolved_at) for a in resolved} == {
        ("resolved", "system", T0 + timedelta(hours=1))
    }
    assert resolve_alerts(session, "api") == []

    [latency] = resolve_alerts(session, "db", alert_type="high_latency", by="watchdog")
    assert (latency.id, latency.resolved_by) == (only_latency.id, "watchdog")
    assert [(a.service_name, a.alert_type) for a in active_alerts(session)] == [
        ("db", "service_down")
    ]
    with pytest.raises(ValidationError, match="alert_type"):
        resolve_alerts(session, "db", alert_type="Service Down")


def test_active_alerts_newest_first_with_filters(session: Session) -> None:
    a = raise_alert(session, alert(alert_type="a", severity="info"), now=T0)
    b = raise_alert(
        session, alert(alert_type="b", severity="critical"), now=T0 + timedelta(minutes=1)
    )
    c = raise_alert(
        session, alert(service_name="db", severity="critical"), now=T0 + timedelta(minutes=2)
    )
    d = raise_alert(session, alert(alert_type="d"), now=T0 + timedelta(minutes=3))
    acknowledge_alert(session, a.id, by="ops")
    resolve_alert(session, d.id, by="ops")
    assert [x.id for x in active_alerts(session)] == [c.id, b.id, a.id]
    assert [x.id for x in active_alerts(session, service="api")] == [b.id, a.id]
    assert [x.id for x in active_alerts(session, severity="critical")] == [c.id, b.id]
    assert [x.id for x in active_alerts(session, service="api", severity="info")] == [a.id]
    assert active_alerts(session, service="nobody") == []
    with pytest.raises(ValidationError, match="severity"):
        active_alerts(session, severity="fatal")


def test_log_lines_are_structured_and_carry_no_payload(
    session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cim_monitoring")
    secret = "details-payload-never-logged"
    raised = raise_alert(session, alert(details={"token": secret}))
    raise_alert(session, alert(details={"token": secret}))
    resolve_alert(session, raised.id, by="ops")
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert levels == [
        ("INFO", "alert raised"),
        ("DEBUG", "alert raised again"),
        ("INFO", "alert resolved"),
    ]
    first = caplog.records[0]
    assert (first.service, first.alert_id) == ("api", str(raised.id))  # type: ignore[attr-defined]
    assert all(secret not in str(vars(r)) for r in caplog.records)


def run_concurrently(engine: Engine, work: Callable[[Session], R]) -> list[R | Exception]:
    """Run ``work`` in THREADS transactions at once (each commits), released by one barrier."""
    factory = make_session_factory(engine)
    barrier = threading.Barrier(THREADS)

    def one() -> R | Exception:
        with factory() as session:
            session.connection()  # connect before the barrier, so the starts really coincide
            barrier.wait()
            try:
                result = work(session)
            except MonitoringError as exc:
                session.rollback()
                return exc
            session.commit()
            return result

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(lambda _: one(), range(THREADS)))


def test_concurrent_raisers_share_one_alert(scratch_engine: Engine) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    results = run_concurrently(
        scratch_engine, lambda s: raise_alert(s, alert(service_name=service))
    )
    assert all(isinstance(r, AlertOut) for r in results)
    assert len({r.id for r in results if isinstance(r, AlertOut)}) == 1
    assert sorted(r.occurrence_count for r in results if isinstance(r, AlertOut)) == list(
        range(1, THREADS + 1)
    )
    with make_session_factory(scratch_engine)() as session:
        [open_alert] = active_alerts(session, service=service)
        assert open_alert.occurrence_count == THREADS


def test_concurrent_acknowledgers_exactly_one_wins(scratch_engine: Engine) -> None:
    factory = make_session_factory(scratch_engine)
    with factory.begin() as session:
        alert_id = raise_alert(session, alert(service_name=f"svc-{uuid.uuid4().hex[:8]}")).id
    results = run_concurrently(scratch_engine, lambda s: acknowledge_alert(s, alert_id, by="ops"))
    assert sum(isinstance(r, AlertOut) for r in results) == 1
    assert sum(isinstance(r, InvalidTransition) for r in results) == THREADS - 1
