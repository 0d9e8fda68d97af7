"""The fleet-scale data set of issue #11, generated inside PostgreSQL through the INSERT path.

``services`` services, each probed hourly for days 2-30 before ``end`` and every 5 minutes over
the last day: 696 + 288 = 984 checks per service (4.92M rows for 5,000 services). The rows go in
through plain ``INSERT ... SELECT`` statements, oldest first, a day (hourly part) or an hour
(5-minute part) per statement, so every insert trigger fires as it does in production: the
rollups, and whatever per-service state a later revision keeps.

Statuses make incidents of every shape: one service in 20 flaps, with runs of 1-12 non-healthy
checks (all degraded, or all down) at irregular intervals; the first few services are down at
the end, for 1, 11, 21, ... checks, so incidents are still open; every other check is healthy.
Latencies are a deterministic function of the check and the service, with a tail, and NULL when
the service is down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, text

from cim_monitoring.partitions import add_partitions, utc_day
from cim_monitoring.vocabulary import HEALTH_CHECK_COLUMNS
from workbench.fleet import empty, name_width, vacuum_analyze

HOURLY = 29 * 24  # checks per service over days 2-30
FIVE_MINUTELY = 24 * 12  # checks per service over the last day
PER_SERVICE = HOURLY + FIVE_MINUTELY
FLAPPING_EVERY = 20  # one service in this many flaps
# Each statement (and transaction) inserts a day of hourly checks or an hour of 5-minute ones.
_HOURLY_PER_STATEMENT = 24
_FIVE_MINUTELY_PER_STATEMENT = 12

# Check j of a service (0: the oldest) is hourly before the last day, every 5 minutes in it.
# A flapping service's checks fall in cycles of 40-100 checks; each cycle opens with a run of
# 1-12 non-healthy checks, down in one cycle out of three.
_CHECKS = text(
    f"""
    WITH checks AS (
        SELECT s, j,
               CASE WHEN j < {HOURLY}
                    THEN CAST(:end AS timestamptz) - interval '1 day'
                         - ({HOURLY} - 1 - j) * interval '1 hour'
                    ELSE CAST(:end AS timestamptz) - ({PER_SERVICE} - 1 - j) * interval '5 minutes'
               END AS at,
               (j + s * 37) % (40 + (s * 13) % 61) AS phase,
               (j + s * 37) / (40 + (s * 13) % 61) AS cycle
          FROM generate_series(CAST(:first AS integer), :last) AS j,
               generate_series(0, :services - 1) AS s
    ),
    statuses AS (
        SELECT s, j, at,
               CASE WHEN s < :down_at_end AND j >= {PER_SERVICE} - (1 + 10 * s) THEN 'down'
                    WHEN s % {FLAPPING_EVERY} = 7 AND phase < 1 + (cycle * 7 + s) % 12
                    THEN CASE WHEN (cycle + s) % 3 = 0 THEN 'down' ELSE 'degraded' END
                    ELSE 'healthy'
               END AS status
          FROM checks
    )
    INSERT INTO service_health_checks ({", ".join(HEALTH_CHECK_COLUMNS)})
    SELECT format('svc-%s', lpad(s::text, :width, '0')),
           status,
           CASE WHEN status = 'down' THEN NULL
                ELSE 20 + (j * 7919 + s * 104729) % 180
                     + CASE WHEN (j + s) % 50 = 0 THEN 2000 ELSE 0 END
           END,
           CAST(CASE WHEN status = 'down' THEN '{{"code": 503}}' ELSE '{{"code": 200}}' END
                AS jsonb),
           CASE WHEN status = 'down' THEN 'connection refused' END,
           at
      FROM statuses
     ORDER BY j, s
    """
)


@dataclass(frozen=True)
class FleetData:
    services: int
    end: datetime  # the newest check
    rows: int

    @property
    def window_end(self) -> datetime:
        """Just after the newest check, and never on a whole hour: windows that end there
        have partial hours at both ends, as a dashboard's windows do."""
        end = self.end + timedelta(minutes=1)
        return end + timedelta(minutes=1) if end.minute == 0 else end


def down_at_end(services: int) -> int:
    """How many services are still down when the data ends."""
    return max(3, services // 1000)


def build(
    engine: Engine, *, services: int, end: datetime, progress: Callable[[str], None] = print
) -> FleetData:
    """Empty the monitoring tables, make the partitions of their days, fill them as described
    above, oldest first, a statement (and a transaction) per day of hourly checks and per hour
    of 5-minute checks; then VACUUM ANALYZE as autovacuum would."""
    with engine.begin() as connection:
        empty(connection)
        # Every day of the data set in its own partition, as the upkeep keeps a live database.
        first = utc_day(end - timedelta(days=31))
        add_partitions(connection, first, days_ahead=(utc_day(end) - first).days)
    steps = [
        *((j, j + _HOURLY_PER_STATEMENT) for j in range(0, HOURLY, _HOURLY_PER_STATEMENT)),
        *(
            (j, j + _FIVE_MINUTELY_PER_STATEMENT)
            for j in range(HOURLY, PER_SERVICE, _FIVE_MINUTELY_PER_STATEMENT)
        ),
    ]
    params = {
        "end": end,
        "services": services,
        "width": name_width(services),
        "down_at_end": down_at_end(services),
    }
    for number, (first, stop) in enumerate(steps, 1):
        with engine.begin() as connection:
            connection.execute(_CHECKS, {**params, "first": first, "last": stop - 1})
        if number % 10 == 0 or number == len(steps):
            progress(f"  {number}/{len(steps)} statements")
    vacuum_analyze(engine)
    return FleetData(services=services, end=end, rows=services * PER_SERVICE)


def existing(engine: Engine, services: int) -> FleetData | None:
    """The data set already in the database, if its size is that of ``services`` services."""
    with engine.connect() as connection:
        rows, newest = connection.execute(
            text("SELECT count(*), max(created_at) FROM service_health_checks")
        ).one()
    if rows != services * PER_SERVICE:
        return None
    return FleetData(services=services, end=newest, rows=rows)
