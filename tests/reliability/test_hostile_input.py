"""Hostile and malformed input through the public API.

Every call either stores the value and reads it back identical (the returned model and a fresh
SELECT after commit), or raises pydantic's ``ValidationError`` having written nothing. Never a
driver exception, and the transaction stays usable: a ``SELECT 1`` and a valid write succeed in
it afterwards. The module commits for real, on a migrated database of its own.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scratch import migrated_engine
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from cim_monitoring import (
    AlertEvent,
    AlertNotFound,
    AlertOut,
    DatabaseUnavailable,
    HealthCheckOut,
    ServiceHealthCheck,
    acknowledge_alert,
    check_history,
    make_engine,
    make_session_factory,
    purge_expired,
    raise_alert,
    record_check,
    record_checks,
    resolve_alert,
    service_stats,
    session_scope,
    status_series,
)

if TYPE_CHECKING:
    from conftest import PostgresServer

T = TypeVar("T")
EXAMPLES = settings(max_examples=80, deadline=None)
MEGABYTE = 1024 * 1024
INJECTION = [
    "'; DROP TABLE service_health_checks; --",
    "' OR '1'='1",
    "x'); DELETE FROM alert_events; --",
    "$$; TRUNCATE alert_events; $$",
    "'; SELECT pg_sleep(10); --",
    "%s",
    "%(service_name)s",
    ":service_name",
    "?",
    "\\",
    "\\.",
    "\\N",
    '"; --',
    "*/ OR 1=1 /*",
]
SPECIAL = [
    "\x00",
    "api\x00",
    "\ud800",
    "x\udfffy",
    "\u202eevil\u202c",
    "\u0627\u0644\u062e\u062f\u0645\u0629",
    "\u200f\u200e\ufeff",
    "\x7f",
    "\x85",
    "\x1b[31mred",
    "line\nbreak",
    "\r\n",
    "\U0001f600",
    "\U0010ffff",
    "\ufffe",
    " ",
    "",
]
STATUSES = ["healthy", "degraded", "down"]
SEVERITIES = ["info", "warning", "critical"]
OFFSETS = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)
FAR = [
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),
    datetime(9999, 12, 31),
    datetime(1970, 1, 1),
]

hostile_text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=120),
    st.sampled_from(INJECTION + SPECIAL),
    st.builds(lambda a, b: a + b, st.sampled_from(INJECTION + SPECIAL), st.text(max_size=20)),
    st.text(st.characters(exclude_categories=()), min_size=90, max_size=110),
)
datetimes = st.one_of(
    st.datetimes(),  # naive
    st.datetimes(timezones=OFFSETS),
    st.sampled_from(FAR),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(hostile_text, children, max_size=5),
        st.dictionaries(st.one_of(st.integers(), st.booleans(), st.none()), children, max_size=2),
    ),
    max_leaves=25,
)
json_objects = st.one_of(st.dictionaries(hostile_text, json_values, max_size=6), json_values)


def deep(levels: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(levels):
        child: dict[str, Any] = {}
        node["a"] = [child]
        node = child
    return root


@pytest.fixture(scope="module")
def engine(pg_server: PostgresServer) -> Iterator[Engine]:  # the scratch one, not the shared
    yield from migrated_engine(pg_server)


@pytest.fixture(scope="module")
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def json_equal(left: Any, right: Any) -> bool:
    """Equality of JSON values as jsonb sees them: numbers compare by decimal value (jsonb
    stores ``1e+30`` as ``numeric`` and prints it back as an integer)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return Decimal(repr(left)) == Decimal(repr(right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    return type(left) is type(right) and left == right


def snapshot(session: Session) -> Any:
    """A digest of both tables' whole contents: any write, even an UPDATE, changes it."""
    return session.execute(
        text(
            "SELECT (SELECT coalesce(md5(string_agg(t::text, ',' ORDER BY id)), '') "
            "          FROM service_health_checks t), "
            "       (SELECT coalesce(md5(string_agg(a::text, ',' ORDER BY id)), '') "
            "          FROM alert_events a)"
        )
    ).one()


def attempt(
    factory: sessionmaker[Session],
    call: Callable[[Session], T],
    refusals: tuple[type[Exception], ...] = (ValidationError,),
) -> T | None:
    """Run ``call`` in a transaction: it returns, or raises ValidationError (or one of
    ``refusals``) having written nothing; either way the transaction then still serves a SELECT
    and a valid write."""
    with factory.begin() as session:
        before = snapshot(session)
        result: T | None
        try:
            result = call(session)
        except refusals:
            assert snapshot(session) == before, "a refused call wrote something"
            result = None
        assert session.execute(text("SELECT 1")).scalar_one() == 1
        record_check(session, {"service_name": "still-usable", "status": "healthy"})
    return result


def stored_check(engine: Engine, check_id: int) -> HealthCheckOut:
    with engine.connect() as connection:
        row = connection.execute(
            ServiceHealthCheck.__table__.select().where(ServiceHealthCheck.id == check_id)
        ).one()
    return HealthCheckOut.model_validate(row)


def stored_alert(engine: Engine, alert_id: uuid.UUID) -> AlertOut:
    with engine.connect() as connection:
        row = connection.execute(
            AlertEvent.__table__.select().where(AlertEvent.id == alert_id)
        ).one()
    return AlertOut.model_validate(row)


def assert_check_matches(out: HealthCheckOut, given_check: dict[str, Any]) -> None:
    assert out.service_name == given_check["service_name"]
    assert out.status == given_check["status"]
    assert out.latency_ms == given_check.get("latency_ms")
    assert json_equal(out.probe_details, given_check.get("probe_details", {}))
    assert out.error_message == given_check.get("error_message")
    if given_check.get("created_at") is not None:
        assert out.created_at == given_check["created_at"]


checks = st.fixed_dictionaries(
    {"service_name": hostile_text, "status": st.one_of(st.sampled_from(STATUSES), hostile_text)},
    optional={
        "latency_ms": st.one_of(
            st.none(),
            st.integers(),
            st.integers(min_value=0, max_value=2**31),
            st.floats(),
            st.booleans(),
            hostile_text,
        ),
        "probe_details": json_objects,
        "error_message": st.one_of(st.none(), hostile_text),
        "created_at": st.one_of(st.none(), datetimes),
    },
)


@EXAMPLES
@given(check=checks)
def test_record_check(
    engine: Engine, factory: sessionmaker[Session], check: dict[str, Any]
) -> None:
    out = attempt(factory, lambda session: record_check(session, check))
    if out is not None:
        assert_check_matches(out, check)
        assert stored_check(engine, out.id) == out


EXPLICIT_CHECKS: list[dict[str, Any]] = [
    {"service_name": "x" * MEGABYTE, "status": "down"},
    {"service_name": "big", "status": "down", "error_message": "e" * MEGABYTE},
    {"service_name": "big", "status": "down", "probe_details": {"k": "v" * MEGABYTE}},
    {"service_name": "big", "status": "down", "probe_details": {"a": [0] * 200_000}},
    {"service_name": "deep", "status": "down", "probe_details": deep(30)},
    {"service_name": "deep", "status": "down", "probe_details": deep(5_000)},
    {"service_name": "deep", "status": "down", "probe_details": deep(100_000)},
    {"service_name": "nan", "status": "down", "probe_details": {"x": float("nan")}},
    {"service_name": "inf", "status": "down", "probe_details": {"x": -float("inf")}},
    {"service_name": "key", "status": "down", "probe_details": {1: "x"}},
    {"service_name": "far", "status": "down", "created_at": FAR[1]},
    {"service_name": "far", "status": "down", "created_at": FAR[3]},
    {"service_name": INJECTION[0], "status": "healthy", "created_at": FAR[0]},
    {"service_name": "far", "status": "healthy", "created_at": FAR[2]},
]


@pytest.mark.parametrize("index", range(len(EXPLICIT_CHECKS)))
def test_record_check_explicit(engine: Engine, factory: sessionmaker[Session], index: int) -> None:
    check = EXPLICIT_CHECKS[index]
    out = attempt(factory, lambda session: record_check(session, check))
    if out is not None:
        assert_check_matches(out, check)
        assert stored_check(engine, out.id) == out
    batch = attempt(factory, lambda session: record_checks(session, [check] * 2))
    assert (batch is None) == (out is None)


@EXAMPLES
@given(batch=st.lists(checks, max_size=8), bad_at=st.one_of(st.none(), st.integers(0, 8)))
def test_record_checks(
    engine: Engine, factory: sessionmaker[Session], batch: list[dict[str, Any]], bad_at: int | None
) -> None:
    rows: list[dict[str, Any]] = [
        {"service_name": "bulk", "status": "healthy", "latency_ms": i} for i in range(1500)
    ]
    rows += batch
    if bad_at is not None:  # a bad row after a full chunk already streamed
        rows.insert(1500 + bad_at, {"service_name": "bulk", "status": "on fire"})

    def copy(session: Session) -> tuple[int, int]:
        first = session.execute(text("SELECT coalesce(max(id), 0) FROM service_health_checks"))
        return first.scalar_one(), record_checks(session, iter(rows))

    result = attempt(factory, copy)
    if result is None:
        return
    assert bad_at is None
    last_id, count = result
    assert count == len(rows)
    with engine.connect() as connection:
        stored = connection.execute(
            ServiceHealthCheck.__table__.select()
            .where(
                ServiceHealthCheck.id > last_id, ServiceHealthCheck.service_name != "still-usable"
            )
            .order_by(ServiceHealthCheck.id)
        ).all()
    assert len(stored) == len(rows)
    for row, given_check in zip(stored[1500:], batch, strict=True):
        assert_check_matches(HealthCheckOut.model_validate(row), given_check)


alerts = st.fixed_dictionaries(
    {
        "service_name": hostile_text,
        "alert_type": st.one_of(st.sampled_from(["service_down", "high_latency"]), hostile_text),
        "severity": st.one_of(st.sampled_from(SEVERITIES), hostile_text),
        "message": hostile_text,
    },
    optional={"details": json_objects},
)


@EXAMPLES
@given(alert=alerts, now=st.one_of(st.none(), datetimes))
@example(
    alert={"service_name": "a", "alert_type": "t", "severity": "info", "message": "m" * MEGABYTE},
    now=None,
)
@example(
    alert={
        "service_name": "a",
        "alert_type": "t; DROP TABLE alert_events",
        "severity": "info",
        "message": "m",
    },
    now=None,
)
def test_raise_alert(
    engine: Engine, factory: sessionmaker[Session], alert: dict[str, Any], now: datetime | None
) -> None:
    # Unique per example, so dedup never merges two examples' alerts.
    alert = {**alert, "service_name": f"{alert['service_name']}"[:60] + uuid.uuid4().hex[:8]}
    out = attempt(factory, lambda session: raise_alert(session, alert, now=now))
    if out is None:
        return
    assert out.service_name == alert["service_name"]
    assert out.alert_type == alert["alert_type"]
    assert out.severity == alert["severity"]
    assert out.message == alert["message"]
    assert json_equal(out.details, alert.get("details", {}))
    if now is not None:
        assert out.created_at == now
    assert stored_alert(engine, out.id) == out


@EXAMPLES
@given(
    by=hostile_text,
    alert_id=st.one_of(hostile_text, st.uuids(), st.integers(), st.none()),
    now=st.one_of(st.none(), datetimes),
)
@example(by="x" * MEGABYTE, alert_id=None, now=None)
@example(by="'; UPDATE alert_events SET status = 'resolved'; --", alert_id=None, now=None)
def test_transitions(
    engine: Engine, factory: sessionmaker[Session], by: str, alert_id: Any, now: datetime | None
) -> None:
    with factory.begin() as session:
        raised = raise_alert(
            session,
            {
                "service_name": f"t-{uuid.uuid4().hex}",
                "alert_type": "service_down",
                "severity": "critical",
                "message": "down",
            },
        )
    target = raised.id if alert_id is None else alert_id
    acked = attempt(
        factory,
        lambda session: acknowledge_alert(session, target, by=by, now=now),
        (ValidationError, AlertNotFound),
    )
    if alert_id is not None and acked is None:
        # A malformed id was refused; a well-formed foreign one is AlertNotFound.
        return
    if acked is None:
        assert stored_alert(engine, raised.id).status == "active"
        return
    assert acked.acknowledged_by == by
    if now is not None:
        assert acked.acknowledged_at == now
    assert stored_alert(engine, raised.id) == acked
    resolved = attempt(factory, lambda session: resolve_alert(session, raised.id, by=by))
    assert resolved is not None
    assert resolved.resolved_by == by
    assert stored_alert(engine, raised.id) == resolved


def test_transition_of_an_unknown_id_is_alert_not_found(factory: sessionmaker[Session]) -> None:
    with pytest.raises(AlertNotFound), factory.begin() as session:
        acknowledge_alert(session, uuid.uuid4(), by="ops")


@EXAMPLES
@given(
    service=hostile_text,
    start=datetimes,
    end=datetimes,
    limit=st.one_of(st.integers(), st.just(1000), hostile_text),
    services=st.one_of(st.none(), st.lists(hostile_text, max_size=4), hostile_text),
    bucket=st.timedeltas(),
)
@example(
    service=INJECTION[1],
    start=FAR[0],
    end=FAR[2],
    limit=1000,
    services=[INJECTION[0]],
    bucket=timedelta(days=365 * 1000),
)
def test_queries(
    factory: sessionmaker[Session],
    service: str,
    start: datetime,
    end: datetime,
    limit: Any,
    services: Any,
    bucket: timedelta,
) -> None:
    history = attempt(
        factory,
        lambda session: check_history(session, service, start=start, end=end, limit=limit),
    )
    if history is not None:
        assert all(check.service_name == service for check in history)
        assert all(start <= check.created_at < end for check in history)
    stats = attempt(
        factory, lambda session: service_stats(session, start=start, end=end, services=services)
    )
    if stats is not None and services is not None:
        assert {s.service_name for s in stats} >= set(services)
    attempt(
        factory,
        lambda session: status_series(session, service, start=start, end=end, bucket=bucket),
    )


def test_no_password_in_logs(
    engine: Engine, caplog: pytest.LogCaptureFixture, pg_server: PostgresServer
) -> None:
    password = "s3cr3t-Pa55"
    caplog.set_level(logging.DEBUG)
    secret_engine = make_engine(engine.url.set(password=password))
    unreachable = make_engine(engine.url.set(password=password, host="127.0.0.1", port=1))
    try:
        factory = make_session_factory(secret_engine)
        with session_scope(factory) as session:
            record_check(session, {"service_name": "logged", "status": "down"})
            record_checks(session, [{"service_name": "logged", "status": "healthy"}] * 3)
            alert = raise_alert(
                session,
                {"service_name": "logged", "alert_type": "x", "severity": "info", "message": "m"},
            )
            raise_alert(
                session,
                {"service_name": "logged", "alert_type": "x", "severity": "info", "message": "m"},
            )
            acknowledge_alert(session, alert.id, by="ops")
            resolve_alert(session, alert.id, by="ops")
        purge_expired(secret_engine, older_than=timedelta(days=3650))
        with pytest.raises(ValidationError), session_scope(factory) as session:
            record_check(session, {"service_name": "logged", "status": "on fire"})
        unreachable_factory = make_session_factory(unreachable)
        with pytest.raises(DatabaseUnavailable) as caught, session_scope(unreachable_factory) as s:
            s.execute(text("SELECT 1"))
        logging.getLogger("cim_monitoring").error("lost", exc_info=caught.value)
    finally:
        secret_engine.dispose()
        unreachable.dispose()

    # The run did log, including the URL (redacted) and the error with its cause chain.
    assert any("***" in str(getattr(r, "database", "")) for r in caplog.records), (
        "make_engine did not log its URL: the test would prove nothing"
    )
    assert any(r.name.startswith("cim_monitoring.repository") for r in caplog.records)
    for record in caplog.records:
        assert password not in record.getMessage()
        assert password not in repr(vars(record))
    assert password not in caplog.text
