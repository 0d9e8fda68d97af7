"""Status changes and incidents, read from ``service_health_changes`` (and the state rows).

The trigger on service_health_checks records one change per check whose status differs from
the previous check of its service (by ``created_at``, then id), backfills included, in the
inserting transaction. Changes are kept as long as the rollups, so both functions answer for
ranges whose raw checks retention has purged.

An incident is a maximal run of non-healthy checks: it starts at a change from nothing or
healthy to degraded or down, and ends at the next change to healthy. Over a window, one
statement reads, for every service at once, the changes inside the window grouped by service
and the state rows, and probes the primary key only where those leave something unknown (see
``_INCIDENTS``); Python then walks the few changes of each service.

Known limits: an incident whose first change retention has purged is reported from its oldest
change kept; without ``services``, a service is found through its changes in the window or its
state row, so a service whose state retention has purged (no check for longer than raw
retention) and whose incident is open since before the window is left out: name it in
``services`` to see it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from cim_monitoring.repository._common import CHANGES, without_jit
from cim_monitoring.schemas import Incident, StatusChange
from cim_monitoring.schemas.outputs import trusted_rows
from cim_monitoring.schemas.params import ChangesParams, IncidentsParams
from cim_monitoring.vocabulary import HEALTH_STATUSES

_HEALTHY, _DEGRADED, _WORST = HEALTH_STATUSES

_CHANGES_IN_RANGE = (
    select(CHANGES.c.service_name, CHANGES.c.changed_at, CHANGES.c.from_status, CHANGES.c.to_status)
    .where(
        CHANGES.c.service_name == bindparam("service"),
        CHANGES.c.changed_at >= bindparam("start"),
        CHANGES.c.changed_at < bindparam("end"),
    )
    .order_by(CHANGES.c.changed_at, CHANGES.c.check_id)
)

# Per service: its state row (its newest check), its changes inside the window, and probes of
# the primary key (service_name, changed_at, check_id), each one descent of that index
# however long the service's history, and each gated by a condition on what came before it (a
# one-time filter inside the subquery, which an ON clause would apply only after the probe):
# - the status at start: the first change inside the window came from it; without one, if the
#   newest check is older than end, nothing changed since start and it is the state's status;
#   only otherwise the last change before start is probed;
# - not healthy at start: where that incident began (failing that, as retention purged it, the
#   oldest change kept; the second branch runs only when the first finds nothing), and
#   whether it was down before start;
# - not healthy at end and a check at or after end: the first change to healthy from end on,
#   which ends that incident, and whether it was down before that.
# Row comparisons on (changed_at, check_id) keep ties on changed_at in check order, the order
# in which the trigger compared the checks.
_INCIDENTS = """
    WITH inside AS (
        SELECT c.service_name,
               array_agg(c.changed_at ORDER BY c.changed_at, c.check_id) AS changed_at,
               array_agg(c.to_status ORDER BY c.changed_at, c.check_id) AS to_status,
               (array_agg(c.from_status ORDER BY c.changed_at, c.check_id))[1] AS from_status
          FROM service_health_changes AS c
         WHERE c.changed_at >= :start AND c.changed_at < :end {named}
         GROUP BY c.service_name
    ),
    names AS ({names})
    SELECT names.service_name,
           now() AS now,
           opening.changed_at AS opened_at,
           down_before.found AS down_before,
           inside.changed_at AS changed_at,
           inside.to_status AS to_status,
           closing.changed_at AS closed_at,
           down_after.found AS down_after
      FROM names
      LEFT JOIN service_health_state AS state ON state.service_name = names.service_name
      LEFT JOIN inside ON inside.service_name = names.service_name
      CROSS JOIN LATERAL (
            SELECT state.checked_at IS NULL OR state.checked_at >= :end AS checked_after
      ) AS newest
      LEFT JOIN LATERAL (
            SELECT c.to_status FROM service_health_changes AS c
             WHERE inside.service_name IS NULL AND newest.checked_after
               AND c.service_name = names.service_name AND c.changed_at < :start
             ORDER BY c.changed_at DESC, c.check_id DESC
             LIMIT 1
      ) AS before ON true
      CROSS JOIN LATERAL (
            SELECT CASE WHEN inside.service_name IS NOT NULL THEN inside.from_status
                        WHEN newest.checked_after THEN before.to_status
                        ELSE state.status
                   END AS status
      ) AS at_start
      LEFT JOIN LATERAL (
            (SELECT c.changed_at, c.check_id FROM service_health_changes AS c
              WHERE at_start.status <> '{healthy}'
                AND c.service_name = names.service_name AND c.changed_at < :start
                AND (c.from_status IS NULL OR c.from_status = '{healthy}')
                AND c.to_status <> '{healthy}'
              ORDER BY c.changed_at DESC, c.check_id DESC
              LIMIT 1)
            UNION ALL
            (SELECT c.changed_at, c.check_id FROM service_health_changes AS c
              WHERE at_start.status <> '{healthy}'
                AND c.service_name = names.service_name AND c.changed_at < :start
              ORDER BY c.changed_at, c.check_id
              LIMIT 1)
            LIMIT 1
      ) AS opening ON true
      LEFT JOIN LATERAL (
            SELECT true AS found FROM service_health_changes AS c
             WHERE opening.changed_at IS NOT NULL
               AND c.service_name = names.service_name
               AND c.changed_at >= opening.changed_at
               AND (c.changed_at, c.check_id) >= (opening.changed_at, opening.check_id)
               AND c.changed_at < :start
               AND c.to_status = '{down}'
             LIMIT 1
      ) AS down_before ON true
      CROSS JOIN LATERAL (
            SELECT newest.checked_after
                   AND COALESCE(inside.to_status[cardinality(inside.to_status)], at_start.status)
                       <> '{healthy}' AS open
      ) AS at_end
      LEFT JOIN LATERAL (
            SELECT c.changed_at, c.check_id FROM service_health_changes AS c
             WHERE at_end.open
               AND c.service_name = names.service_name AND c.changed_at >= :end
               AND c.to_status = '{healthy}'
             ORDER BY c.changed_at, c.check_id
             LIMIT 1
      ) AS closing ON true
      LEFT JOIN LATERAL (
            SELECT true AS found FROM service_health_changes AS c
             WHERE at_end.open
               AND c.service_name = names.service_name AND c.changed_at >= :end
               AND (closing.check_id IS NULL
                    OR c.changed_at <= closing.changed_at
                       AND (c.changed_at, c.check_id) < (closing.changed_at, closing.check_id))
               AND c.to_status = '{down}'
             LIMIT 1
      ) AS down_after ON true
     -- Only services with an incident to report: one open at start or a change inside.
     WHERE opening.changed_at IS NOT NULL OR inside.service_name IS NOT NULL
     ORDER BY names.service_name
"""
# The statuses are the vocabulary's, written in as literals: the planner sees the filters.
_STATUSES = {"healthy": _HEALTHY, "down": _WORST}
_EVERY_SERVICE = text(
    _INCIDENTS.format(
        **_STATUSES,
        named="",
        names="SELECT service_name FROM service_health_state UNION SELECT service_name FROM inside",
    )
)
_NAMED_SERVICES = text(
    _INCIDENTS.format(
        **_STATUSES,
        named="AND c.service_name = ANY(CAST(:services AS text[]))",
        names="SELECT DISTINCT unnest(CAST(:services AS text[])) AS service_name",
    )
)


def status_changes(
    session: Session, service: str, *, start: datetime, end: datetime
) -> list[StatusChange]:
    """``service``'s status changes in ``[start, end)``, oldest first: one per check whose
    status differs from the previous check's (by ``created_at``, then id); ``from_status`` is
    None for its first check. Kept as long as the rollups, past raw retention."""
    params = ChangesParams(service=service, start=start, end=end)
    values = {"service": params.service, "start": params.start, "end": params.end}
    return trusted_rows(StatusChange, session.execute(_CHANGES_IN_RANGE, values).all())


def incidents(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    services: Sequence[str] | None = None,
) -> list[Incident]:
    """The incidents that overlap ``[start, end)`` (``started_at < end`` and ``ended_at``
    None or after ``start``: one that ended exactly at ``start`` does not), ordered by service
    and start, of ``services`` or else of every service with a change in the range or a
    current state (see the module's docstring for the limits).

    An incident is a maximal run of non-healthy checks, from its first check to the first
    healthy check after it (``ended_at``, None while it is ongoing); ``worst_status`` covers
    all of it, before ``start`` and after ``end`` too. ``duration`` is ``ended_at -
    started_at``, for an ongoing one ``min(end, now()) - started_at`` (never negative).
    """
    params = IncidentsParams(start=start, end=end, services=services)
    return trusted_rows(
        Incident, overlapping(session, params.start, params.end, params.services).runs
    )


class Run(NamedTuple):
    """An incident as :func:`overlapping` finds it; moments in the session's time zone."""

    service_name: str
    started_at: datetime
    ended_at: datetime | None
    worst_status: str
    duration: timedelta


class Overlapping(NamedTuple):
    """The incidents overlapping a window, by service and start, and the database's
    ``now()`` (None when there is none)."""

    now: datetime | None
    runs: list[Run]


def overlapping(
    session: Session,
    start: datetime,
    end: datetime,
    services: Sequence[str] | None,
) -> Overlapping:
    """:func:`incidents` for validated arguments, as plain tuples: what counts and sums over
    them need, without an output per incident."""
    values: dict[str, Any] = {"start": start, "end": end}
    with without_jit(session):
        if services is None:
            rows = session.execute(_EVERY_SERVICE, values).all()
        else:
            rows = session.execute(_NAMED_SERVICES, values | {"services": list(services)}).all()
    if not rows:
        return Overlapping(None, [])
    now = rows[0].now
    horizon = min(end, now)
    runs = [
        Run(
            row.service_name,
            started_at,
            ended_at,
            worst,
            max((ended_at or horizon) - started_at, timedelta(0)),
        )
        for row in rows
        for started_at, ended_at, worst in _runs(row)
        if started_at < end and (ended_at is None or ended_at > start)
    ]
    return Overlapping(now, runs)


def _runs(row: Any) -> list[tuple[datetime, datetime | None, str]]:
    """The incidents one row of the statement describes: (started_at, ended_at, worst)."""
    found = []
    opened_at: datetime | None = row.opened_at
    worst = _WORST if row.down_before else _DEGRADED
    for changed_at, status in zip(row.changed_at or (), row.to_status or (), strict=True):
        if status == _HEALTHY:
            if opened_at is not None:
                found.append((opened_at, changed_at, worst))
                opened_at = None
        elif opened_at is None:
            opened_at, worst = changed_at, status
        elif status == _WORST:
            worst = _WORST
    if opened_at is not None:
        found.append((opened_at, row.closed_at, _WORST if row.down_after else worst))
    return found


class Downtime(NamedTuple):
    """One service over a window: the incidents that overlap it, and how long of it (up to
    the database's ``now()``) the service was not healthy."""

    incidents: int
    seconds: float


# Per service named: the window's changes with the moment of the next one (the segments of
# time each status held), summed in SQL. The status at start is the first change's
# ``from_status`` when the window has one, else the state's status when the newest check is
# older than ``end`` (nothing changed since start: a dashboard's window ending now), and only
# otherwise one probe of the primary key, as in ``_INCIDENTS``. service_stats needs only these
# two figures: walking every incident in Python took three times the rest of a 30-day
# service_stats for 50 services that changed status every hour.
_DOWNTIME_SQL = """
    WITH horizon AS (SELECT least(CAST(:end AS timestamptz), now()) AS at),
    inside AS (
        SELECT c.service_name, c.changed_at, c.check_id, c.from_status, c.to_status,
               c.to_status <> '{healthy}'
                   AND (c.from_status IS NULL OR c.from_status = '{healthy}') AS entering,
               lead(c.changed_at) OVER in_order AS next_at,
               first_value(c.from_status) OVER in_order AS first_from
          FROM service_health_changes AS c
         WHERE c.changed_at >= :start AND c.changed_at < :end {named}
        WINDOW in_order AS (PARTITION BY c.service_name ORDER BY c.changed_at, c.check_id)
    ),
    per_service AS (
        -- first_from is the same on every row of a service (NULL for its first check ever).
        SELECT service_name, max(first_from) AS from_status,
               count(*) FILTER (WHERE entering AND changed_at > :start)
               -- Of incidents begun exactly at start, only one still open after the last
               -- change at start overlaps the window (the others ended at start).
               + CASE WHEN bool_or(entering AND changed_at = :start)
                           AND bool_or(changed_at = :start AND to_status <> '{healthy}'
                                       AND (next_at IS NULL OR next_at > :start))
                      THEN 1 ELSE 0 END AS entered,
               -- Intervals summed, their seconds taken once: extract() per row (numeric)
               -- was most of the statement's time.
               CAST(coalesce(extract(epoch FROM sum(greatest(
                   least(coalesce(next_at, horizon.at), horizon.at)
                   - least(changed_at, horizon.at), interval '0'))
                   FILTER (WHERE to_status <> '{healthy}')), 0) AS float8) AS inside_seconds,
               min(changed_at) AS first_at,
               -- An incident open before start that a change exactly at start ends does not
               -- overlap the window.
               coalesce(bool_or(changed_at = :start AND to_status = '{healthy}'), false)
                   AS healed_at_start
          FROM inside, horizon
         GROUP BY service_name
    )
    SELECT names.service_name,
           CASE WHEN per_service.service_name IS NOT NULL THEN per_service.from_status
                WHEN state.checked_at < :end THEN state.status
                ELSE before.to_status
           END AS at_start,
           coalesce(per_service.entered, 0) AS entered,
           coalesce(per_service.inside_seconds, 0) AS inside_seconds,
           per_service.healed_at_start,
           -- float8, not numeric: loading 5,000 Decimals cost more than the statement.
           CAST(extract(epoch FROM greatest(
               least(coalesce(per_service.first_at, horizon.at), horizon.at)
               - CAST(:start AS timestamptz), interval '0')) AS float8) AS leading_seconds
      FROM (SELECT DISTINCT unnest(CAST(:services AS text[])) AS service_name) AS names
      CROSS JOIN horizon
      LEFT JOIN per_service ON per_service.service_name = names.service_name
      LEFT JOIN service_health_state AS state ON state.service_name = names.service_name
      LEFT JOIN LATERAL (
            SELECT c.to_status FROM service_health_changes AS c
             WHERE per_service.service_name IS NULL
               AND (state.checked_at IS NULL OR state.checked_at >= :end)
               AND c.service_name = names.service_name AND c.changed_at < :start
             ORDER BY c.changed_at DESC, c.check_id DESC
             LIMIT 1
      ) AS before ON true
"""
# Every service's figures need no filter: a change in the window is a check in it, and the
# services with checks in it are the ones named (a filter of 5,000 names took longer to plan
# than the statement took to run).
_DOWNTIME_OF_ALL = text(_DOWNTIME_SQL.format(**_STATUSES, named=""))
_DOWNTIME_OF_NAMED = text(
    _DOWNTIME_SQL.format(**_STATUSES, named="AND c.service_name = ANY(CAST(:services AS text[]))")
)


def downtime(
    session: Session, start: datetime, end: datetime, services: Sequence[str], *, named: bool
) -> dict[str, Downtime]:
    """Per service of ``services``, for validated arguments: what ``service_stats`` reports of
    the incidents overlapping ``[start, end)``, the same figures as summing over
    :func:`incidents`, from one statement. ``named`` is False when ``services`` are every
    service with checks in the window."""
    values = {"start": start, "end": end, "services": list(services)}
    statement = _DOWNTIME_OF_NAMED if named else _DOWNTIME_OF_ALL
    with without_jit(session):
        rows = session.execute(statement, values).all()
    found = {}
    for name, at_start, count, seconds, healed_at_start, leading_seconds in rows:
        if at_start is not None and at_start != _HEALTHY:
            # Not healthy at start: that incident overlaps unless a change at start ended it;
            # its time in the window runs up to the first change inside.
            count += 0 if healed_at_start else 1
            seconds += leading_seconds
        found[name] = Downtime(count, seconds)
    return found
