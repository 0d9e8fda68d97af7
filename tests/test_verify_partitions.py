"""doctor's day-partition check: the days ahead without a partition, from the bounds in the
catalogue; nothing to report on a table that is not partitioned by day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Column, Connection, DateTime, MetaData, Table, text

from cim_monitoring.verify.partitions import DAYS_AHEAD, missing, missing_days

DAY = date(2026, 11, 30)


def _at(day: date, hour: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def _day(offset: int) -> tuple[datetime, datetime]:
    start = _at(DAY + timedelta(days=offset))
    return start, start + timedelta(days=1)


@pytest.mark.parametrize(
    ("ranges", "expected"),
    [
        ([_day(0), _day(1), _day(2)], []),
        ([_day(0), _day(2)], [DAY + timedelta(days=1)]),
        ([], [DAY + timedelta(days=n) for n in range(3)]),
        # One partition over several days, and days cut in hours, count as covered.
        ([(_at(DAY), _at(DAY + timedelta(days=3)))], []),
        ([(_at(DAY, h), _at(DAY, h + 1)) for h in range(23)] + [_day(1), _day(2)], [DAY]),
        ([(None, _at(DAY + timedelta(days=1))), (_at(DAY + timedelta(days=1)), None)], []),
        # A partition that ends inside a day leaves that day to the default partition.
        (
            [_day(0), (_at(DAY + timedelta(days=1)), _at(DAY + timedelta(days=1), 12)), _day(2)],
            [DAY + timedelta(days=1)],
        ),
    ],
    ids=["all", "gap", "none", "multi-day", "hourly", "unbounded", "part-day"],
)
def test_missing_days(
    ranges: list[tuple[datetime | None, datetime | None]], expected: list[date]
) -> None:
    assert missing_days(ranges, DAY, 3) == expected


def _scratch(connection: Connection, offsets: list[int], *, default: bool) -> Table:
    """A table partitioned by day like the checks, with partitions for today + ``offsets``."""
    connection.execute(
        text(
            "CREATE TABLE verify_scratch (created_at timestamptz NOT NULL) "
            "PARTITION BY RANGE (created_at)"
        )
    )
    # DDL takes no parameters: the bounds are spelled by format() on the server.
    for offset in offsets:
        connection.execute(
            text(
                f"""
                DO $$
                DECLARE day timestamptz := date_trunc('day', now() AT TIME ZONE 'UTC')
                                           AT TIME ZONE 'UTC' + interval '{offset} days';
                BEGIN
                    EXECUTE format('CREATE TABLE verify_scratch_{offset} PARTITION OF '
                                   'verify_scratch FOR VALUES FROM (%L) TO (%L)',
                                   day, day + interval '1 day');
                END $$
                """
            )
        )
    if default:
        connection.execute(
            text("CREATE TABLE verify_scratch_other PARTITION OF verify_scratch DEFAULT")
        )
    return Table("verify_scratch", MetaData(), Column("created_at", DateTime(timezone=True)))


def _oid(connection: Connection, name: str) -> int:
    oid: int = connection.execute(text("SELECT to_regclass(:t)::oid"), {"t": name}).scalar_one()
    return oid


def _today(connection: Connection) -> date:
    today: date = connection.execute(
        text("SELECT CAST(now() AT TIME ZONE 'UTC' AS date)")
    ).scalar_one()
    return today


def test_a_day_without_a_partition_is_named(connection: Connection) -> None:
    # The bounds are read back as the session spells them, in whatever zone it is in.
    connection.execute(text("SET LOCAL TimeZone = 'Pacific/Chatham'"))
    table = _scratch(connection, [n for n in range(DAYS_AHEAD) if n != 1], default=True)
    [problem] = missing(connection, _oid(connection, "verify_scratch"), table)
    tomorrow = (_today(connection) + timedelta(days=1)).isoformat()
    assert problem.message == (
        f"verify_scratch has no partition for {tomorrow} "
        "(rows for them go to the default partition)"
    )
    assert "cim-monitoring purge" in problem.fix


def test_without_a_default_partition_inserts_would_fail(connection: Connection) -> None:
    table = _scratch(connection, [], default=False)
    [problem] = missing(connection, _oid(connection, "verify_scratch"), table)
    assert problem.message.endswith("(inserts for them fail: there is no default partition)")
    assert _today(connection).isoformat() in problem.message


def test_partitions_for_every_day_ahead_hold(connection: Connection) -> None:
    table = _scratch(connection, list(range(DAYS_AHEAD)), default=True)
    assert missing(connection, _oid(connection, "verify_scratch"), table) == []


def test_a_table_not_partitioned_by_day_has_nothing_missing(connection: Connection) -> None:
    """A plain table of ours, and one partitioned by something else than a timestamptz."""
    connection.execute(
        text(
            "CREATE TABLE verify_scratch (service_name text NOT NULL) "
            "PARTITION BY LIST (service_name)"
        )
    )
    for name in ("alert_events", "verify_scratch"):
        assert missing(connection, _oid(connection, name), Table(name, MetaData())) == []
