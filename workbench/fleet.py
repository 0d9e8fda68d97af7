"""A synthetic fleet's data, generated inside PostgreSQL (generate_series) in a few statements:
the benchmarks' data set, and the plan tests' at a small size.

``services`` services probed once a minute for ``rows / (services * 1440)`` days up to ``end``,
one of them silent for all but its first week (the case that sends a naive "latest status"
walking weeks of another index), plus resolved alerts and a few open ones. Statuses and
latencies are a deterministic function of the row number: a mostly healthy fleet with a tail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, text

from cim_monitoring import Base
from cim_monitoring.partitions import add_partitions, utc_day
from cim_monitoring.vocabulary import HEALTH_CHECK_COLUMNS

SERVICES = 50
PER_DAY = 24 * 60
SILENT_SERVICE = "svc-00"
SILENT_FOR = timedelta(days=23)
RESOLVED_ALERTS = 100_000
OPEN_ALERTS = 5

_CHECKS = text(
    f"""
    INSERT INTO service_health_checks ({", ".join(HEALTH_CHECK_COLUMNS)})
    SELECT format('svc-%s', lpad(s::text, 2, '0')),
           CASE WHEN m % 997 = 0 THEN 'down' WHEN m % 101 = 0 THEN 'degraded' ELSE 'healthy' END,
           CASE WHEN m % 997 = 0 THEN NULL
                ELSE 20 + (m * 7919 + s * 104729) % 180 + CASE WHEN m % 50 = 0 THEN 2000 ELSE 0 END
           END,
           '{{"code": 200}}'::jsonb,
           NULL,
           CAST(:start AS timestamptz) + m * interval '1 minute'
      FROM generate_series(0, :services - 1) AS s,
           generate_series(0, :minutes - 1) AS m
     WHERE NOT (s = 0 AND CAST(:start AS timestamptz) + m * interval '1 minute' >= :silent_since)
    """
)
_ALERTS = text(
    """
    INSERT INTO alert_events (service_name, alert_type, severity, status, message, created_at,
                              last_seen_at, resolved_at, resolved_by)
    SELECT format('svc-%s', lpad((a % :services)::text, 2, '0')), 'service_down', 'critical',
           'resolved', 'down', t, t, t + interval '5 minutes', 'system'
      FROM generate_series(1, :resolved) AS a,
           LATERAL (SELECT CAST(:end AS timestamptz) - a * (:span / :resolved)) AS times(t)
    """
)
_OPEN = text(
    """
    INSERT INTO alert_events (service_name, alert_type, severity, message, created_at)
    SELECT format('svc-%s', lpad(a::text, 2, '0')), 'high_latency', 'warning', 'slow',
           CAST(:end AS timestamptz) - a * interval '1 hour'
      FROM generate_series(1, :open) AS a
    """
)


@dataclass(frozen=True)
class Dataset:
    start: datetime
    end: datetime
    rows: int

    @property
    def days(self) -> float:
        return (self.end - self.start) / timedelta(days=1)


def name_width(services: int) -> int:
    """Digits in the service numbers of a fleet of ``services``: at least two."""
    return max(len(str(services - 1)), 2)


def service_name(number: int, services: int) -> str:
    """``svc-07`` of 50 services, ``svc-0007`` of 5000: names sort in number order."""
    return f"svc-{number:0{name_width(services)}d}"


def empty(connection: Connection) -> None:
    """Empty every monitoring table the models declare (raw checks, rollups, alerts, and any
    table a later revision adds), so no derived row outlives its checks."""
    names = ", ".join(table.name for table in Base.metadata.sorted_tables)
    connection.execute(text(f"TRUNCATE {names}"))


def vacuum_analyze(engine: Engine) -> None:
    """What autovacuum would do after a bulk load: visibility map and statistics."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))


def build(
    engine: Engine, *, rows: int, end: datetime, resolved_alerts: int = RESOLVED_ALERTS
) -> Dataset:
    """Empty the monitoring tables, make the partitions of the data set's days and fill them;
    VACUUM ANALYZE as autovacuum would."""
    minutes = max(rows // SERVICES, 60)
    start = end - timedelta(minutes=minutes)
    with engine.begin() as connection:
        empty(connection)
        # Every day of the data set in its own partition, as the upkeep keeps a live database.
        first = utc_day(start)
        add_partitions(connection, first, days_ahead=(utc_day(end) - first).days)
        connection.execute(
            _CHECKS,
            {
                "start": start,
                "services": SERVICES,
                "minutes": minutes,
                "silent_since": max(start + timedelta(days=7), end - SILENT_FOR),
            },
        )
        span = {"end": end, "span": end - start}
        connection.execute(_ALERTS, {**span, "services": SERVICES, "resolved": resolved_alerts})
        connection.execute(_OPEN, {"end": end, "open": OPEN_ALERTS})
        count = connection.execute(text("SELECT count(*) FROM service_health_checks")).scalar_one()
    vacuum_analyze(engine)
    return Dataset(start=start, end=end, rows=count)
