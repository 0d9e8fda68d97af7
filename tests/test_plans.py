"""Plan shapes of the dashboard queries: the intended indexes and rollups, never a sequential
scan of service_health_checks. Deterministic (plans, not timings), on the benchmarks' synthetic
fleet at a small size: 50 services probed every minute for a day, 20k resolved alerts, ANALYZEd."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from scratch import migrated_engine
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from cim_monitoring import (
    active_alerts,
    alerts_by_id_prefix,
    check_history,
    dashboard,
    incidents,
    latest_status,
    make_session_factory,
    service_stats,
    status_changes,
    status_series,
)
from workbench import fleet
from workbench.plans import StatementLog, explain, scans

if TYPE_CHECKING:
    from conftest import PostgresServer

END = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)
# The checks' indexes as their day partitions name them (a regular expression).
CHECKS_BY_TIME = r"service_health_checks_p\d{8}_created_at_idx"
CHECKS_BY_SERVICE = r"service_health_checks_p\d{8}_service_name_created_at_idx"
CHANGES_BY_SERVICE = "pk_service_health_changes"
PARTITION = re.compile(r"service_health_checks_(p\d{8}|default)")


@pytest.fixture(scope="module")
def engine(pg_server: PostgresServer) -> Iterator[Engine]:
    for engine in migrated_engine(pg_server):
        fleet.build(engine, rows=fleet.SERVICES * 24 * 60, end=END, resolved_alerts=20_000)
        yield engine


def scans_of(engine: Engine, call: Callable[[Session], object]) -> set[str]:
    """Every scan in the plans of every statement ``call`` sends."""
    log = StatementLog()
    with log.capture(engine), make_session_factory(engine)() as session:
        call(session)
    with engine.connect() as connection:
        return {
            scan
            for statement in log.statements
            for scan in scans(connection.exec_driver_sql(*explain(statement)).scalar_one())
        }


def uses(found: set[str], name: str) -> bool:
    """A scan of the table or index ``name``, a regular expression (a table's index names
    contain the table's)."""
    return any(re.search(name, scan) for scan in found)


CASES: dict[str, tuple[Callable[[Session], object], tuple[str, ...]]] = {
    "latest_status": (latest_status, ("service_health_state",)),
    "service_stats 24 h": (
        lambda s: service_stats(s, start=END - 24 * HOUR, end=END),
        ("service_health_hourly", CHECKS_BY_TIME),
    ),
    "status_series hourly": (
        lambda s: status_series(s, "svc-07", start=END - 12 * HOUR, end=END, bucket=HOUR),
        ("service_health_hourly", CHECKS_BY_SERVICE),
    ),
    "check_history": (
        lambda s: check_history(s, "svc-07", start=END - HOUR, end=END, limit=100),
        (CHECKS_BY_SERVICE,),
    ),
    "active_alerts": (active_alerts, ("ix_alert_events_open_created_at",)),
    # An id prefix is a range of the primary key: 20k resolved alerts are never all read.
    "alerts_by_id_prefix": (lambda s: alerts_by_id_prefix(s, "4a"), ("pk_alert_events",)),
    "dashboard": (
        lambda s: dashboard(s, now=END),
        ("service_health_state", "service_health_hourly", "ix_alert_events_open_created_at"),
    ),
    # Changes and incidents: probes of the primary key of the changes, never a raw check.
    "status_changes": (
        lambda s: status_changes(s, "svc-07", start=END - 24 * HOUR, end=END),
        (CHANGES_BY_SERVICE,),
    ),
    "incidents 24 h": (
        lambda s: incidents(s, start=END - 24 * HOUR, end=END),
        (CHANGES_BY_SERVICE, "service_health_state"),
    ),
    "incidents of 2 services": (
        lambda s: incidents(s, start=END - 24 * HOUR, end=END, services=["svc-01", "svc-07"]),
        (CHANGES_BY_SERVICE,),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_dashboard_query_plan(engine: Engine, case: str) -> None:
    call, indexes = CASES[case]
    found = scans_of(engine, call)
    assert "Seq Scan service_health_checks" not in found, found
    assert "Seq Scan service_health_changes" not in found, found
    for index in indexes:
        assert uses(found, index), found


# (call, the days its range covers): the data set ends at 12:30 on 1 March 2024.
TIME_BOUNDED: dict[str, tuple[Callable[[Session], object], set[str]]] = {
    "check_history 1 h": (
        lambda s: check_history(s, "svc-07", start=END - HOUR, end=END, limit=100),
        {"p20240301"},
    ),
    "status_series 12 h": (
        lambda s: status_series(s, "svc-07", start=END - 12 * HOUR, end=END, bucket=HOUR),
        {"p20240301"},
    ),
    "service_stats 24 h": (
        lambda s: service_stats(s, start=END - 24 * HOUR, end=END),
        {"p20240229", "p20240301"},
    ),
}


@pytest.mark.parametrize("case", TIME_BOUNDED)
def test_a_time_bounded_query_reads_only_the_partitions_of_its_range(
    engine: Engine, case: str
) -> None:
    """Pruned at planning: no other day, and not the default partition."""
    call, days = TIME_BOUNDED[case]
    read = {m.group(1) for scan in scans_of(engine, call) if (m := PARTITION.search(scan))}
    assert read, case
    assert read <= days, read


def test_the_data_set_lies_in_day_partitions(engine: Engine) -> None:
    """Not vacuous: the fleet's rows are in the partitions of their days, none in the default."""
    with engine.connect() as connection:
        found = dict(
            connection.exec_driver_sql(
                "SELECT tableoid::regclass::text, count(*) FROM service_health_checks GROUP BY 1"
            ).all()
        )
    assert set(found) == {"service_health_checks_p20240229", "service_health_checks_p20240301"}
