"""Plan shapes of the dashboard queries: the intended indexes and rollups, never a sequential
scan of service_health_checks. Deterministic (plans, not timings), on the benchmarks' synthetic
fleet at a small size: 50 services probed every minute for a day, 20k resolved alerts, ANALYZEd."""

from __future__ import annotations

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
CHECKS_BY_TIME = "ix_service_health_checks_created_at"
CHECKS_BY_SERVICE = "ix_service_health_checks_service_name_created_at"
CHANGES_BY_SERVICE = "pk_service_health_changes"


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
    """A scan of the table or index ``name`` (a table's index names contain the table's)."""
    return any(name in scan for scan in found)


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
