"""Per-service state and status changes: in step with the raw checks on every insert path,
backfills merged exactly, the existing checks folded in by the migration, retention that keeps
what still tells a service's status."""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from derived import CHANGES, CHANGES_REFERENCE, STATE, STATE_REFERENCE, TOTALS, totals_reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from cim_monitoring import (
    count_expired,
    make_engine,
    make_session_factory,
    migrations,
    purge_expired,
    record_check,
    record_checks,
)
from cim_monitoring.vocabulary import HEALTH_STATUSES

if TYPE_CHECKING:
    from conftest import PostgresServer

T0 = datetime(2024, 1, 1, tzinfo=UTC)

RAW_INSERT = text(
    "INSERT INTO service_health_checks (service_name, status, latency_ms, created_at) "
    "SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
    "AS r(service_name text, status text, latency_ms integer, created_at timestamptz)"
)


def assert_in_step(bind: Session | Connection) -> None:
    assert bind.execute(STATE).all() == bind.execute(STATE_REFERENCE).all()
    assert bind.execute(CHANGES).all() == bind.execute(CHANGES_REFERENCE).all()
    assert [tuple(row) for row in bind.execute(TOTALS)] == totals_reference(bind)


check = st.fixed_dictionaries(
    {
        "service_name": st.sampled_from(["api", "db", "queue"]),
        "status": st.sampled_from(HEALTH_STATUSES),
        "latency_ms": st.one_of(st.none(), st.integers(0, 500)),
        # Few distinct moments: ties on created_at are common, and most statements after the
        # first land between checks already stored.
        "minute": st.integers(0, 20),
    }
)
statement = st.tuples(st.sampled_from(["record_checks", "record_check", "raw"]), st.lists(check))


def _insert(session: Session, path: str, checks: list[dict[str, Any]]) -> None:
    rows = [
        {
            "service_name": c["service_name"],
            "status": c["status"],
            "latency_ms": c["latency_ms"],
            # Nine minutes apart: the checks fall in three hours of running totals.
            "created_at": T0 + timedelta(minutes=9 * c["minute"]),
        }
        for c in checks
    ]
    if path == "record_checks":
        record_checks(session, rows)
    elif path == "record_check":
        for row in rows:
            record_check(session, row)
    else:
        for row in rows:
            row["created_at"] = row["created_at"].isoformat()
        session.execute(RAW_INSERT, {"rows": json.dumps(rows)})


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(statements=st.lists(statement, min_size=1, max_size=6))
def test_state_and_changes_follow_every_insert_path(
    session: Session, statements: list[tuple[str, list[dict[str, Any]]]]
) -> None:
    savepoint = session.begin_nested()
    try:
        for path, checks in statements:
            _insert(session, path, checks)
        assert_in_step(session)
    finally:
        savepoint.rollback()


def test_a_backfill_between_checks_splits_a_run(session: Session) -> None:
    for minute, status in ((0, "healthy"), (10, "healthy"), (20, "healthy")):
        record_check(
            session,
            {"service_name": "api", "status": status, "created_at": T0 + timedelta(minutes=minute)},
        )
    record_check(
        session, {"service_name": "api", "status": "down", "created_at": T0 + timedelta(minutes=5)}
    )
    rows = session.execute(text("SELECT changed_at, from_status, to_status " + _CHANGES_OF_API))
    assert [(at - T0, before, after) for at, before, after in rows] == [
        (timedelta(0), None, "healthy"),
        (timedelta(minutes=5), "healthy", "down"),
        (timedelta(minutes=10), "down", "healthy"),
    ]
    # The state stays on the newest check, however old the backfill.
    state = session.execute(text("SELECT status, checked_at FROM service_health_state")).one()
    assert state == ("healthy", T0 + timedelta(minutes=20))
    assert_in_step(session)


_CHANGES_OF_API = (
    "FROM service_health_changes WHERE service_name = 'api' ORDER BY changed_at, check_id"
)


def test_the_migration_folds_in_existing_checks(alembic_engine: Engine) -> None:
    # The revision before the state and changes: every later one (the running totals' fill
    # from the rollups, the day partitions) then runs over existing checks too.
    history = migrations.history()
    before = history[history.index("e3b9f1d7a4c6") - 1]
    with alembic_engine.begin() as connection:
        migrations.upgrade(connection, before)
        for minute, status in enumerate(("healthy", "down", "down", "degraded", "healthy")):
            connection.execute(
                text(
                    "INSERT INTO service_health_checks (service_name, status, created_at) "
                    "VALUES ('api', :status, :at), ('db', 'healthy', :at)"
                ),
                {"status": status, "at": T0 + timedelta(minutes=minute)},
            )
    with alembic_engine.begin() as connection:
        migrations.upgrade(connection)
        assert len(connection.execute(CHANGES).all()) == 5  # api: 4, db: 1
        assert_in_step(connection)


def test_purge_keeps_each_services_newest_change_and_drops_silent_states(
    session: Session,
) -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)
    old = now - timedelta(days=500)
    rows = [
        # Silent for 40 days: its raw checks and its state go, its newest change stays.
        ("silent", "healthy", old),
        ("silent", "down", now - timedelta(days=40)),
        # Two changes past the rollups' retention, one within: the two old ones go (and the
        # silent service's first one).
        ("flappy", "healthy", old),
        ("flappy", "down", old + timedelta(hours=1)),
        ("flappy", "healthy", now - timedelta(days=1)),
    ]
    record_checks(
        session,
        [{"service_name": name, "status": status, "created_at": at} for name, status, at in rows],
    )
    expected = count_expired(session, now=now)
    assert (expected.states, expected.changes) == (1, 3)
    result = purge_expired(session, now=now)
    assert (result.states, result.changes, result.health_checks) == (1, 3, 4)
    assert session.execute(text("SELECT service_name FROM service_health_state")).all() == [
        ("flappy",)
    ]
    kept = session.execute(
        text("SELECT service_name, to_status FROM service_health_changes ORDER BY 1")
    ).all()
    assert kept == [("flappy", "healthy"), ("silent", "down")]
    # The silent service reports again: its change is taken against the status it had.
    record_check(session, {"service_name": "silent", "status": "down"})
    assert session.execute(text("SELECT count(*) FROM service_health_changes")).scalar() == 2


def test_concurrent_writers_of_the_same_services_stay_in_step(pg_server: PostgresServer) -> None:
    """Writers that share services, each statement a mix of new and backfilled checks: the
    state-row locks serialize them, so each sees what the others committed."""
    engine = make_engine(pg_server.create_database(), pool_size=4)
    try:
        with engine.begin() as connection:
            migrations.upgrade(connection)
        factory = make_session_factory(engine)
        errors: list[BaseException] = []

        def writer(seed: int) -> None:
            rng = random.Random(seed)
            try:
                for _ in range(40):
                    rows = [
                        {
                            "service_name": rng.choice(["api", "db", "queue"]),
                            "status": rng.choice(HEALTH_STATUSES),
                            "created_at": T0 + timedelta(minutes=rng.randint(0, 60 * 24 * 60)),
                        }
                        for _ in range(rng.randint(1, 10))
                    ]
                    with factory.begin() as session:
                        record_checks(session, rows)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads), "a writer hung (deadlock?)"
        assert errors == []
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM service_health_changes")).scalar()
            assert_in_step(connection)
    finally:
        engine.dispose()


def test_statements_past_the_replanning_size_agree(session: Session) -> None:
    """Past 10,000 rows the trigger plans its statements for their size (EXECUTE): the same
    results, for appends and backfills alike."""
    rng = random.Random(7)

    def checks(start: datetime) -> list[dict[str, Any]]:
        return [
            {
                "service_name": f"svc-{i % 3}",
                "status": rng.choice(HEALTH_STATUSES),
                "created_at": start + timedelta(seconds=i),
            }
            for i in range(12_000)
        ]

    record_checks(session, checks(T0))
    record_checks(session, checks(T0 + timedelta(days=1)))  # appends
    record_checks(session, checks(T0 + timedelta(seconds=1, milliseconds=500)))  # backfills
    assert_in_step(session)
