"""The daily partitions of service_health_checks: the conversion of a populated table, rows of
any day stored, the upkeep idempotent and safe when run concurrently, and the purge dropping
whole days with exact counts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from scratch import migrated_engine
from sqlalchemy import Connection, Engine, text

from cim_monitoring import count_expired, make_session_factory, migrations, purge_expired
from cim_monitoring.partitions import DAYS_AHEAD, add_partitions, drop_partitions

if TYPE_CHECKING:
    from conftest import PostgresServer

# The revision the partitioning revision follows.
BEFORE_PARTITIONS = migrations.history()[migrations.history().index("f6a1c3e5b7d9") - 1]
DAY = timedelta(days=1)
TRIGGERS = text(
    "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
    "WHERE tgrelid = 'service_health_checks'::regclass AND NOT tgisinternal ORDER BY 1"
)
WHERE = text(
    "SELECT tableoid::regclass::text FROM service_health_checks WHERE service_name = :name"
)


def _insert(connection: Connection, name: str, at: datetime, count: int = 1) -> None:
    connection.execute(
        text(
            "INSERT INTO service_health_checks (service_name, status, latency_ms, created_at) "
            "SELECT :name, 'healthy', 5, :at + n * interval '1 second' "
            "FROM generate_series(0, :count - 1) AS n"
        ),
        {"name": name, "at": at, "count": count},
    )


def _today(connection: Connection) -> date:
    return connection.execute(text("SELECT CAST(now() AT TIME ZONE 'UTC' AS date)")).scalar_one()


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _partitions(connection: Connection) -> list[str]:
    return list(
        connection.execute(
            text(
                "SELECT inhrelid::regclass::text FROM pg_inherits "
                "WHERE inhparent = 'service_health_checks'::regclass ORDER BY 1"
            )
        ).scalars()
    )


def test_the_conversion_keeps_every_row_id_and_trigger(empty_engine: Engine) -> None:
    """A table with three days of checks becomes the partition of those days; every row and
    id stays, the triggers fire on the parent, the ids continue after the largest."""
    migrations.upgrade(empty_engine, BEFORE_PARTITIONS)
    with empty_engine.begin() as connection:
        today = _today(connection)
        for back in (2, 1, 0):
            _insert(connection, "converted", _midnight(today - back * DAY), 100)
        before = connection.execute(
            text("SELECT id, created_at FROM service_health_checks ORDER BY id")
        ).all()
        triggers_before = connection.execute(TRIGGERS).all()
    migrations.upgrade(empty_engine)
    with empty_engine.begin() as connection:
        after = connection.execute(
            text("SELECT id, created_at FROM service_health_checks ORDER BY id")
        ).all()
        assert after == before
        legacy = f"service_health_checks_p{today - 2 * DAY:%Y%m%d}_{today:%Y%m%d}"
        assert set(connection.execute(WHERE, {"name": "converted"}).scalars()) == {legacy}
        expected = {legacy, "service_health_checks_default"} | {
            f"service_health_checks_p{today + n * DAY:%Y%m%d}" for n in range(1, DAYS_AHEAD + 1)
        }
        assert set(_partitions(connection)) == expected
        # Every trigger of the table, as it was defined, now on the parent.
        assert connection.execute(TRIGGERS).all() == triggers_before
        _insert(connection, "after-conversion", _midnight(today + DAY))
        new_id = connection.execute(
            text("SELECT id FROM service_health_checks WHERE service_name = 'after-conversion'")
        ).scalar_one()
        assert new_id == before[-1].id + 1
        # The rollup and track triggers fired for the row routed to tomorrow's partition.
        assert connection.execute(
            text(
                "SELECT (SELECT healthy FROM service_health_daily "
                "        WHERE service_name = 'after-conversion'),"
                "       (SELECT check_id FROM service_health_state "
                "        WHERE service_name = 'after-conversion')"
            )
        ).one() == (1, new_id)


@pytest.fixture(scope="module")
def module_engine(pg_server: PostgresServer) -> Iterator[Engine]:
    yield from migrated_engine(pg_server)


def test_rows_of_a_day_without_a_partition_land_in_the_default(connection: Connection) -> None:
    today = _today(connection)
    _insert(connection, "backfill", _midnight(today - 45 * DAY))
    _insert(connection, "clock-ahead", _midnight(today + 30 * DAY))
    _insert(connection, "on-time", _midnight(today + DAY))
    where = {
        name: connection.execute(WHERE, {"name": name}).scalar_one()
        for name in ("backfill", "clock-ahead", "on-time")
    }
    assert where == {
        "backfill": "service_health_checks_default",
        "clock-ahead": "service_health_checks_default",
        "on-time": f"service_health_checks_p{today + DAY:%Y%m%d}",
    }


def test_making_a_day_moves_its_rows_out_of_the_default(connection: Connection) -> None:
    day = _today(connection) + 30 * DAY
    _insert(connection, "early", _midnight(day), 3)
    _insert(connection, "early-next", _midnight(day + DAY))
    assert add_partitions(connection, day, days_ahead=0) == 1
    assert add_partitions(connection, day, days_ahead=0) == 0
    assert (
        connection.execute(WHERE, {"name": "early"}).scalars().all()
        == [f"service_health_checks_p{day:%Y%m%d}"] * 3
    )
    assert connection.execute(WHERE, {"name": "early-next"}).scalar_one() == (
        "service_health_checks_default"
    )


def test_the_upkeep_is_idempotent(connection: Connection) -> None:
    today = _today(connection)
    partitions = _partitions(connection)
    assert add_partitions(connection, today) == 0
    assert _partitions(connection) == partitions


def test_the_upkeep_refuses_a_silly_span(connection: Connection) -> None:
    with pytest.raises(Exception, match=r"days must be 1\.\.366"):
        add_partitions(connection, _today(connection), days_ahead=400)


def test_concurrent_upkeeps_make_each_day_once(module_engine: Engine) -> None:
    """Eight sessions make the same ten days at once while a writer inserts into them: every
    day is made once, nobody fails, no row is lost."""
    with module_engine.connect() as connection:
        first = _today(connection) + 100 * DAY
    made: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(9)

    def upkeep() -> None:
        try:
            with module_engine.begin() as connection:
                start.wait()
                made.append(add_partitions(connection, first, days_ahead=9))
        except BaseException as exc:  # reported below
            errors.append(exc)

    def writer() -> None:
        start.wait()
        for n in range(20):
            with module_engine.begin() as connection:
                _insert(connection, "concurrent-writer", _midnight(first + (n % 10) * DAY))

    threads = [threading.Thread(target=upkeep) for _ in range(8)] + [
        threading.Thread(target=writer)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with module_engine.begin() as connection:
        # Whatever a losing session left undone, one more upkeep finishes.
        made.append(add_partitions(connection, first, days_ahead=9))
        assert sum(made) == 10
        assert (
            connection.execute(
                text(
                    "SELECT count(*) FROM service_health_checks "
                    "WHERE service_name = 'concurrent-writer'"
                )
            ).scalar_one()
            == 20
        )
        assert drop_partitions(connection, _midnight(first + 10 * DAY)) is not None


def test_purge_drops_whole_days_and_deletes_the_rest_exactly(module_engine: Engine) -> None:
    """Three expired days dropped whole, the expired part of the fourth and the default's
    expired rows deleted; the counts are the ones count_expired gave."""
    with module_engine.begin() as connection:
        today = _today(connection)
        first = today - 40 * DAY
        add_partitions(connection, first, days_ahead=3)
        for n in range(4):
            _insert(connection, "purged", _midnight(first + n * DAY), 50)
        _insert(connection, "purged", _midnight(first - 10 * DAY), 7)  # in the default
    cutoff = _midnight(first + 3 * DAY) + timedelta(seconds=20)
    factory = make_session_factory(module_engine)
    with factory.begin() as session:
        expected = count_expired(session, now=cutoff + timedelta(days=30))
    result = purge_expired(module_engine, now=cutoff + timedelta(days=30))
    assert result.health_checks == expected.health_checks == 3 * 50 + 20 + 7
    with module_engine.begin() as connection:
        left = _partitions(connection)
        assert not any(f"p{first + n * DAY:%Y%m%d}" in p for n in range(3) for p in left)
        assert f"service_health_checks_p{first + 3 * DAY:%Y%m%d}" in left
        assert (
            connection.execute(
                text("SELECT count(*) FROM service_health_checks WHERE service_name = 'purged'")
            ).scalar_one()
            == 30
        )


def test_the_conversion_covers_rows_ahead_and_reuses_a_prebuilt_index(
    empty_engine: Engine,
) -> None:
    """A row stamped days ahead (a clock running ahead) stretches the old table's range to its
    day; the partitions made ahead start after it. An index built beforehand (CONCURRENTLY, by
    an operator) becomes the old table's primary key instead of a new build under the lock."""
    migrations.upgrade(empty_engine, BEFORE_PARTITIONS)
    with empty_engine.begin() as connection:
        today = _today(connection)
        _insert(connection, "ahead", _midnight(today + 3 * DAY))
        _insert(connection, "now", _midnight(today))
        connection.execute(
            text(
                "CREATE UNIQUE INDEX service_health_checks_id_created_at "
                "ON service_health_checks (id, created_at)"
            )
        )
        prebuilt = connection.execute(
            text("SELECT 'service_health_checks_id_created_at'::regclass::oid")
        ).scalar_one()
    migrations.upgrade(empty_engine)
    with empty_engine.begin() as connection:
        legacy = f"service_health_checks_p{today:%Y%m%d}_{today + 3 * DAY:%Y%m%d}"
        assert set(_partitions(connection)) == {legacy, "service_health_checks_default"} | {
            f"service_health_checks_p{today + n * DAY:%Y%m%d}" for n in range(4, DAYS_AHEAD + 1)
        }
        key = connection.execute(
            text(
                "SELECT conindid FROM pg_constraint WHERE conrelid = CAST(:t AS regclass)"
                " AND contype = 'p'"
            ),
            {"t": legacy},
        ).scalar_one()
        assert key == prebuilt


def test_concurrent_purges_count_every_row_once(module_engine: Engine) -> None:
    """Two purges at once: one drops the expired days, the other finds the upkeep busy and
    deletes what it still sees; together they count each row once."""
    with module_engine.begin() as connection:
        first = _today(connection) - 60 * DAY
        add_partitions(connection, first, days_ahead=4)
        for n in range(5):
            _insert(connection, "purged-twice", _midnight(first + n * DAY), 40)
    now = _midnight(first + 5 * DAY) + timedelta(days=30)
    with make_session_factory(module_engine).begin() as session:
        expected = count_expired(session, now=now).health_checks
    results: list[int] = []
    start = threading.Barrier(2)

    def purge() -> None:
        start.wait()
        results.append(purge_expired(module_engine, now=now).health_checks)

    threads = [threading.Thread(target=purge) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2
    assert sum(results) == expected >= 200
    with module_engine.begin() as connection:
        assert (
            connection.execute(
                text(
                    "SELECT count(*) FROM service_health_checks WHERE service_name = 'purged-twice'"
                )
            ).scalar_one()
            == 0
        )
