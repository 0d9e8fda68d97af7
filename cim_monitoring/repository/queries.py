"""Reading health checks: the newest status per service, one service's history; the clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Integer, bindparam, func, select, text, tuple_
from sqlalchemy.orm import Session

from cim_monitoring.repository._common import CHECKS
from cim_monitoring.schemas import HealthCheckOut, ServiceStatus
from cim_monitoring.schemas.params import HistoryParams, LatestParams

# One probe per service: the first index entry at or after a name, in the order of the
# (service_name, created_at DESC) index, is that service's newest check. Ordering by both columns
# (never "service_name = x ORDER BY created_at DESC") keeps the planner off the created_at index,
# which it would otherwise pick and filter, scanning weeks of rows for a service gone silent.
# Ties on created_at (one batch shares a timestamp) go to the highest id.
_PROBE = """
    SELECT h FROM service_health_checks AS h
     WHERE h.service_name {op} {name}
     ORDER BY h.service_name, h.created_at DESC, h.id DESC
     LIMIT 1
"""
_COLUMNS = ", ".join(f"(latest).{name}" for name in ServiceStatus.model_fields)
# PostgreSQL has no skip scan: enumerate services by jumping from one name to the next.
_LATEST_ALL = text(
    f"""
    WITH RECURSIVE newest AS (
        SELECT ({_PROBE.format(op="IS NOT", name="NULL")}) AS latest
        UNION ALL
        SELECT ({_PROBE.format(op=">", name="(newest.latest).service_name")})
          FROM newest
         WHERE (newest.latest).id IS NOT NULL
    )
    SELECT {_COLUMNS} FROM newest
     WHERE (latest).id IS NOT NULL
     ORDER BY (latest).service_name
    """  # noqa: S608 - assembled from constants; no value is interpolated
)
# MATERIALIZED: otherwise each (latest).column would run the probe again.
_LATEST_OF = text(
    f"""
    WITH probes AS MATERIALIZED (
        SELECT names.name, ({_PROBE.format(op=">=", name="names.name")}) AS latest
          FROM (SELECT DISTINCT unnest(CAST(:services AS text[])) AS name) AS names
    )
    SELECT {_COLUMNS} FROM probes
     WHERE (latest).service_name = probes.name
     ORDER BY probes.name
    """  # noqa: S608 - assembled from constants; no value is interpolated
)

# Built once, every value a bound parameter: constructing and compiling the SELECT anew was a
# sizeable share of a call that PostgreSQL answers in a fraction of a millisecond.
_IN_RANGE = (
    CHECKS.c.service_name == bindparam("service"),
    CHECKS.c.created_at >= bindparam("start"),
    CHECKS.c.created_at < bindparam("end"),
)
_NEWEST_FIRST = (CHECKS.c.created_at.desc(), CHECKS.c.id.desc())
_LIMIT = bindparam("limit", type_=Integer())
_FIRST_PAGE = select(CHECKS).where(*_IN_RANGE).order_by(*_NEWEST_FIRST).limit(_LIMIT)
_BEFORE_AT = bindparam("before_at", type_=CHECKS.c.created_at.type)
_NEXT_PAGE = (
    select(CHECKS)
    .where(
        *_IN_RANGE,
        # The plain bound lets the index range stop at the cursor; the row comparison then
        # only separates checks that share its timestamp.
        CHECKS.c.created_at <= _BEFORE_AT,
        tuple_(CHECKS.c.created_at, CHECKS.c.id)
        < tuple_(_BEFORE_AT, bindparam("before_id", type_=CHECKS.c.id.type)),
    )
    .order_by(*_NEWEST_FIRST)
    .limit(_LIMIT)
)


def latest_status(session: Session, services: Sequence[str] | None = None) -> list[ServiceStatus]:
    """The newest check of each service (of ``services`` when given), ordered by name.

    Services without any check are left out.
    """
    params = LatestParams(services=services)
    if params.services is None:
        rows = session.execute(_LATEST_ALL)
    else:
        rows = session.execute(_LATEST_OF, {"services": list(params.services)})
    return [ServiceStatus.model_validate(row) for row in rows]


def check_history(
    session: Session,
    service: str,
    *,
    start: datetime,
    end: datetime,
    limit: int = 100,
    before: HealthCheckOut | None = None,
) -> list[HealthCheckOut]:
    """One page of ``service``'s checks in ``[start, end)``, newest first.

    For the next page pass the last check of this one as ``before``: pages are keyed on
    ``(created_at, id)``, so rows arriving meanwhile cause neither gaps nor repeats.
    """
    params = HistoryParams(service=service, start=start, end=end, limit=limit, before=before)
    values = {
        "service": params.service,
        "start": params.start,
        "end": params.end,
        "limit": params.limit,
    }
    query = _FIRST_PAGE
    if params.before is not None:
        query = _NEXT_PAGE
        values |= {"before_at": params.before.created_at, "before_id": params.before.id}
    return [HealthCheckOut.model_validate(row) for row in session.execute(query, values)]


def database_now(session: Session) -> datetime:
    """The transaction's start time, PostgreSQL's ``now()``: what ``created_at`` defaults to,
    so ages and windows measured from it agree with the stored rows."""
    return session.execute(select(func.now())).scalar_one()
