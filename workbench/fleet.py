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

from sqlalchemy import Engine, text

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


def build(
    engine: Engine, *, rows: int, end: datetime, resolved_alerts: int = RESOLVED_ALERTS
) -> Dataset:
    """Empty the monitoring tables and fill them; VACUUM ANALYZE as autovacuum would."""
    minutes = max(rows // SERVICES, 60)
    start = end - timedelta(minutes=minutes)
    with engine.begin() as connection:
        connection.execute(
            text(
                "TRUNCATE service_health_checks, service_health_hourly, service_health_daily, "
                "alert_events"
            )
        )
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
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    return Dataset(start=start, end=end, rows=count)
