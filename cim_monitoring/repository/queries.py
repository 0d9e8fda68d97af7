"""Reading health checks: the newest status per service, one service's history; the clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from operator import itemgetter

from sqlalchemy import Integer, Text, any_, bindparam, func, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from cim_monitoring.repository._common import CHECKS, STATES, utc_text
from cim_monitoring.schemas import HealthCheckOut, ServiceStatus
from cim_monitoring.schemas.outputs import trusted_rows
from cim_monitoring.schemas.params import HistoryParams, LatestParams

# The trigger on service_health_checks keeps one row per service, its newest check, in the
# inserting transaction: as exact as the raw rows, one small row per service to read. Sorted
# in Python, as service_stats sorts its names: the same order whatever the database's
# collation, and faster than an index scan in order or a sort on the server.
_LATEST_ALL = select(
    STATES.c.service_name, STATES.c.status, STATES.c.latency_ms, utc_text(STATES.c.checked_at)
)
_LATEST_OF = _LATEST_ALL.where(
    STATES.c.service_name == any_(bindparam("services", type_=ARRAY(Text())))
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
# The columns in the order of the output's fields, for trusted_rows.
_PAGE = select(*(CHECKS.c[name] for name in HealthCheckOut.model_fields))
_FIRST_PAGE = _PAGE.where(*_IN_RANGE).order_by(*_NEWEST_FIRST).limit(_LIMIT)
_BEFORE_AT = bindparam("before_at", type_=CHECKS.c.created_at.type)
_NEXT_PAGE = (
    _PAGE.where(
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
    """The newest check of each service (of ``services`` when given), ordered by name (by code
    point, as ``sorted`` orders strings); of checks sharing a timestamp, the one inserted last.

    Services without any check are left out, and so are those whose every check retention
    has purged.
    """
    params = LatestParams(services=services)
    if params.services is None:
        result = session.execute(_LATEST_ALL)
    else:
        result = session.execute(_LATEST_OF, {"services": list(params.services)})
    # all(): iterating the result would fetch row by row, slower than building the outputs.
    return trusted_rows(ServiceStatus, sorted(result.all(), key=itemgetter(0)))


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
    # Our own rows: built without validating them again (a page of 100 cost more to validate
    # than to fetch).
    return trusted_rows(HealthCheckOut, session.execute(query, values).all())


def database_now(session: Session) -> datetime:
    """The transaction's start time, PostgreSQL's ``now()``: what ``created_at`` defaults to,
    so ages and windows measured from it agree with the stored rows."""
    return session.execute(select(func.now())).scalar_one()
