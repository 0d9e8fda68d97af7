"""Hostile and malformed input through the public API.

Every call either stores the value and reads it back identical (the returned model and a fresh
SELECT after commit), or raises pydantic's ``ValidationError`` having written nothing. Never a
driver exception, and the transaction stays usable: a ``SELECT 1`` and a valid write succeed in
it afterwards. The module commits for real, on a migrated database of its own, through both
faces: the async one shares the validation and the SQL and differs in the driver's transport
(adaptation, the async COPY), so it runs a third of the generated examples.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from faces import Face, FaceKind
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scratch import migrated_engine
from sqlalchemy import Engine, text

from cim_monitoring import (
    AlertEvent,
    AlertNotFound,
    AlertOut,
    DatabaseUnavailable,
    HealthCheckOut,
    ServiceHealthCheck,
)

if TYPE_CHECKING:
    from conftest import PostgresServer

T = TypeVar("T")
EXAMPLES = {"sync": 80, "async": 27}
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


def examples(face_kind: FaceKind) -> settings:
    return settings(max_examples=EXAMPLES[face_kind.name], deadline=None)


def snapshot(face: Face) -> Any:
    """A digest of both tables' whole contents: any write, even an UPDATE, changes it."""
    return face.execute(
        text(
            "SELECT (SELECT coalesce(md5(string_agg(t::text, ',' ORDER BY id)), '') "
            "          FROM service_health_checks t), "
            "       (SELECT coalesce(md5(string_agg(a::text, ',' ORDER BY id)), '') "
            "          FROM alert_events a)"
        )
    ).one()


def attempt(
    face_kind: FaceKind,
    engine: Any,
    call: Callable[[Face], T],
    refusals: tuple[type[Exception], ...] = (ValidationError,),
) -> T | None:
    """Run ``call`` in a transaction: it returns, or raises ValidationError (or one of
    ``refusals``) having written nothing; either way the transaction then still serves a SELECT
    and a valid write."""
    with face_kind.begin(engine) as face:
        before = snapshot(face)
        result: T | None
        try:
            result = call(face)
        except refusals:
            assert snapshot(face) == before, "a refused call wrote something"
            result = None
        assert face.scalar(text("SELECT 1")) == 1
        face.record_check({"service_name": "still-usable", "status": "healthy"})
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


def test_record_check(face_kind: FaceKind, engine: Engine) -> None:
    target = face_kind.engine(engine.url)

    @examples(face_kind)
    @given(check=checks)
    def record(check: dict[str, Any]) -> None:
        out = attempt(face_kind, target, lambda face: face.record_check(check))
        if out is not None:
            assert_check_matches(out, check)
            assert stored_check(engine, out.id) == out

    record()


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
def test_record_check_explicit(face_kind: FaceKind, engine: Engine, index: int) -> None:
    target = face_kind.engine(engine.url)
    check = EXPLICIT_CHECKS[index]
    out = attempt(face_kind, target, lambda face: face.record_check(check))
    if out is not None:
        assert_check_matches(out, check)
        assert stored_check(engine, out.id) == out
    batch = attempt(face_kind, target, lambda face: face.record_checks([check] * 2))
    assert (batch is None) == (out is None)


def test_record_checks(face_kind: FaceKind, engine: Engine) -> None:
    target = face_kind.engine(engine.url)

    @examples(face_kind)
    @given(batch=st.lists(checks, max_size=8), bad_at=st.one_of(st.none(), st.integers(0, 8)))
    def copy(batch: list[dict[str, Any]], bad_at: int | None) -> None:
        copy_batch(face_kind, target, engine, batch, bad_at)

    copy()


def copy_batch(
    face_kind: FaceKind,
    target: Any,
    engine: Engine,
    batch: list[dict[str, Any]],
    bad_at: int | None,
) -> None:
    rows: list[dict[str, Any]] = [
        {"service_name": "bulk", "status": "healthy", "latency_ms": i} for i in range(1500)
    ]
    rows += batch
    if bad_at is not None:  # a bad row after a full chunk already streamed
        rows.insert(1500 + bad_at, {"service_name": "bulk", "status": "on fire"})

    def copy(face: Face) -> tuple[int, int]:
        first = face.scalar(text("SELECT coalesce(max(id), 0) FROM service_health_checks"))
        return first, face.record_checks(iter(rows))

    result = attempt(face_kind, target, copy)
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


def test_raise_alert(face_kind: FaceKind, engine: Engine) -> None:
    target = face_kind.engine(engine.url)

    @examples(face_kind)
    @given(alert=alerts, now=st.one_of(st.none(), datetimes))
    @example(
        alert={
            "service_name": "a",
            "alert_type": "t",
            "severity": "info",
            "message": "m" * MEGABYTE,
        },
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
    def raise_one(alert: dict[str, Any], now: datetime | None) -> None:
        # Unique per example, so dedup never merges two examples' alerts.
        alert = {**alert, "service_name": f"{alert['service_name']}"[:60] + uuid.uuid4().hex[:8]}
        out = attempt(face_kind, target, lambda face: face.raise_alert(alert, now=now))
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

    raise_one()


def test_transitions(face_kind: FaceKind, engine: Engine) -> None:
    target = face_kind.engine(engine.url)

    @examples(face_kind)
    @given(
        by=hostile_text,
        alert_id=st.one_of(hostile_text, st.uuids(), st.integers(), st.none()),
        now=st.one_of(st.none(), datetimes),
    )
    @example(by="x" * MEGABYTE, alert_id=None, now=None)
    @example(by="'; UPDATE alert_events SET status = 'resolved'; --", alert_id=None, now=None)
    def transition(by: str, alert_id: Any, now: datetime | None) -> None:
        with face_kind.begin(target) as face:
            raised = face.raise_alert(
                {
                    "service_name": f"t-{uuid.uuid4().hex}",
                    "alert_type": "service_down",
                    "severity": "critical",
                    "message": "down",
                },
            )
        chosen = raised.id if alert_id is None else alert_id
        acked = attempt(
            face_kind,
            target,
            lambda face: face.acknowledge_alert(chosen, by=by, now=now),
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
        resolved = attempt(face_kind, target, lambda face: face.resolve_alert(raised.id, by=by))
        assert resolved is not None
        assert resolved.resolved_by == by
        assert stored_alert(engine, raised.id) == resolved

    transition()


def test_transition_of_an_unknown_id_is_alert_not_found(
    face_kind: FaceKind, engine: Engine
) -> None:
    target = face_kind.engine(engine.url)
    with pytest.raises(AlertNotFound), face_kind.begin(target) as face:
        face.acknowledge_alert(uuid.uuid4(), by="ops")


def test_queries(face_kind: FaceKind, engine: Engine) -> None:
    target = face_kind.engine(engine.url)

    @examples(face_kind)
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
    def query(
        service: str,
        start: datetime,
        end: datetime,
        limit: Any,
        services: Any,
        bucket: timedelta,
    ) -> None:
        history = attempt(
            face_kind,
            target,
            lambda face: face.check_history(service, start=start, end=end, limit=limit),
        )
        if history is not None:
            assert all(check.service_name == service for check in history)
            assert all(start <= check.created_at < end for check in history)
        stats = attempt(
            face_kind,
            target,
            lambda face: face.service_stats(start=start, end=end, services=services),
        )
        if stats is not None and services is not None:
            assert {s.service_name for s in stats} >= set(services)
        attempt(
            face_kind,
            target,
            lambda face: face.status_series(service, start=start, end=end, bucket=bucket),
        )

    query()


def test_no_password_in_logs(
    face_kind: FaceKind, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    password = "s3cr3t-Pa55"
    caplog.set_level(logging.DEBUG)
    secret_engine = face_kind.engine(engine.url.set(password=password))
    unreachable = face_kind.engine(engine.url.set(password=password, host="127.0.0.1", port=1))
    alert = {"service_name": "logged", "alert_type": "x", "severity": "info", "message": "m"}
    with face_kind.scope(secret_engine) as face:
        face.record_check({"service_name": "logged", "status": "down"})
        face.record_checks([{"service_name": "logged", "status": "healthy"}] * 3)
        raised = face.raise_alert(alert)
        face.raise_alert(alert)
        face.acknowledge_alert(raised.id, by="ops")
        face.resolve_alert(raised.id, by="ops")
    face_kind.purge_expired(secret_engine, older_than=timedelta(days=3650))
    with pytest.raises(ValidationError), face_kind.scope(secret_engine) as face:
        face.record_check({"service_name": "logged", "status": "on fire"})
    with pytest.raises(DatabaseUnavailable) as caught, face_kind.scope(unreachable) as face:
        face.execute(text("SELECT 1"))
    logging.getLogger("cim_monitoring").error("lost", exc_info=caught.value)

    # The run did log, including the URL (redacted) and the error with its cause chain.
    assert any("***" in str(getattr(r, "database", "")) for r in caplog.records), (
        "make_engine did not log its URL: the test would prove nothing"
    )
    assert any(r.name.startswith("cim_monitoring.repository") for r in caplog.records)
    for record in caplog.records:
        assert password not in record.getMessage()
        assert password not in repr(vars(record))
    assert password not in caplog.text
