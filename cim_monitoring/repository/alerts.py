"""The alert lifecycle: raise (deduplicated), acknowledge, resolve, list the open ones.

Raising an alert whose service and type already have an open (active or acknowledged) one
updates that one instead of inserting: ``occurrence_count`` + 1, ``last_seen_at`` moves forward,
``message`` and ``details`` become the latest raise's, and ``severity`` only ever escalates
(info < warning < critical) while the alert is open. The partial UNIQUE index makes this one
``INSERT ... ON CONFLICT`` statement, correct under concurrent raisers.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, case, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.orm import Session
from sqlalchemy.types import Text

from cim_monitoring.errors import AlertNotFound, InvalidTransition
from cim_monitoring.repository._common import ALERTS, at
from cim_monitoring.schemas import AlertIn, AlertOut
from cim_monitoring.schemas.params import (
    ActiveParams,
    Clock,
    PrefixParams,
    ResolveParams,
    TransitionParams,
)
from cim_monitoring.vocabulary import SEVERITIES

logger = logging.getLogger(__name__)

_OPEN = ALERTS.c.status != "resolved"
# Which statuses each target may be reached from; everything else is an InvalidTransition.
_LEGAL_FROM = {"acknowledged": ("active",), "resolved": ("active", "acknowledged")}


def _rank(severity: ColumnElement[str]) -> ColumnElement[int]:
    return func.array_position(literal(list(SEVERITIES), ARRAY(Text)), severity)


def _stamp(target: str, when: datetime | None, by: str) -> dict[str, Any]:
    return {"status": target, f"{target}_at": at(when), f"{target}_by": by}


def _out(row: Row[Any]) -> AlertOut:
    return AlertOut.model_validate(row)


def raise_alert(
    session: Session, alert: AlertIn | Mapping[str, Any], *, now: datetime | None = None
) -> AlertOut:
    """Open an alert, or bump the open one with the same service and type; return it."""
    valid = AlertIn.model_validate(alert)
    when = at(Clock(now=now).now)
    statement = insert(ALERTS).values(**valid.model_dump(), created_at=when, last_seen_at=when)
    new = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=[ALERTS.c.service_name, ALERTS.c.alert_type],
        # Literal SQL: PostgreSQL matches the partial index by its predicate, not a parameter.
        index_where=text("status <> 'resolved'"),
        set_={
            "occurrence_count": ALERTS.c.occurrence_count + 1,
            "last_seen_at": func.greatest(ALERTS.c.last_seen_at, new.last_seen_at),
            "severity": case(
                (_rank(new.severity) > _rank(ALERTS.c.severity), new.severity),
                else_=ALERTS.c.severity,
            ),
            "message": new.message,
            "details": new.details,
        },
    )
    result = _out(session.execute(statement.returning(*ALERTS.c)).one())
    extra = {
        "service": result.service_name,
        "alert_id": str(result.id),
        "alert_type": result.alert_type,
        "severity": result.severity,
        "count": result.occurrence_count,
    }
    # A flapping service re-raises every probe: only the first raise is news.
    if result.occurrence_count == 1:
        logger.info("alert raised", extra=extra)
    else:
        logger.debug("alert raised again", extra=extra)
    return result


def acknowledge_alert(
    session: Session, alert_id: uuid.UUID | str, *, by: str, now: datetime | None = None
) -> AlertOut:
    """active → acknowledged. Raises ``AlertNotFound`` or ``InvalidTransition``."""
    return _transition(session, "acknowledged", TransitionParams(alert_id=alert_id, by=by, now=now))


def resolve_alert(
    session: Session, alert_id: uuid.UUID | str, *, by: str, now: datetime | None = None
) -> AlertOut:
    """active or acknowledged → resolved. Raises ``AlertNotFound`` or ``InvalidTransition``."""
    return _transition(session, "resolved", TransitionParams(alert_id=alert_id, by=by, now=now))


def _transition(session: Session, target: str, params: TransitionParams) -> AlertOut:
    # One conditional UPDATE: of two racing callers exactly one matches, the other sees the
    # new status and gets InvalidTransition.
    row = session.execute(
        update(ALERTS)
        .where(ALERTS.c.id == params.alert_id, ALERTS.c.status.in_(_LEGAL_FROM[target]))
        .values(**_stamp(target, params.now, params.by))
        .returning(*ALERTS.c)
    ).one_or_none()
    if row is None:
        current = session.execute(
            select(ALERTS.c.status).where(ALERTS.c.id == params.alert_id)
        ).scalar_one_or_none()
        if current is None:
            raise AlertNotFound(params.alert_id)
        raise InvalidTransition(params.alert_id, current, target)
    result = _out(row)
    logger.info(
        "alert %s",
        target,
        extra={"service": result.service_name, "alert_id": str(result.id), "by": params.by},
    )
    return result


def resolve_alerts(
    session: Session,
    service: str,
    *,
    alert_type: str | None = None,
    by: str = "system",
    now: datetime | None = None,
) -> list[AlertOut]:
    """Resolve every open alert of ``service`` (of ``alert_type`` only, when given), e.g. when
    the service recovers; return them, newest first. None open is not an error."""
    params = ResolveParams(service=service, alert_type=alert_type, by=by, now=now)
    statement = update(ALERTS).where(ALERTS.c.service_name == params.service, _OPEN)
    if params.alert_type is not None:
        statement = statement.where(ALERTS.c.alert_type == params.alert_type)
    rows = session.execute(
        statement.values(**_stamp("resolved", params.now, params.by)).returning(*ALERTS.c)
    )
    resolved = sorted(map(_out, rows), key=lambda a: (a.created_at, a.id), reverse=True)
    if resolved:
        logger.info(
            "alerts resolved",
            extra={"service": params.service, "count": len(resolved), "by": params.by},
        )
    return resolved


def active_alerts(
    session: Session, *, service: str | None = None, severity: str | None = None
) -> list[AlertOut]:
    """Open (active or acknowledged) alerts, newest first; optionally of one service and/or
    exactly one severity."""
    params = ActiveParams(service=service, severity=severity)
    query = select(ALERTS).where(_OPEN)
    if params.service is not None:
        query = query.where(ALERTS.c.service_name == params.service)
    if params.severity is not None:
        query = query.where(ALERTS.c.severity == params.severity)
    query = query.order_by(ALERTS.c.created_at.desc(), ALERTS.c.id.desc())
    return [_out(row) for row in session.execute(query)]


def alerts_by_id_prefix(
    session: Session, prefix: str, *, open_only: bool = False, limit: int = 10
) -> list[AlertOut]:
    """Alerts whose id starts with ``prefix`` (hex digits, hyphens where the id has them, or a
    whole id), in id order, at most ``limit`` (1-100); only open ones with ``open_only``.

    Ids that start with a prefix are one range of the uuid order, so this reads a range of the
    primary key index, however many alerts there are.
    """
    params = PrefixParams(prefix=prefix, open_only=open_only, limit=limit)
    low = uuid.UUID(params.prefix.ljust(32, "0"))
    high = uuid.UUID(params.prefix.ljust(32, "f"))
    query = select(ALERTS).where(ALERTS.c.id.between(low, high))
    if params.open_only:
        query = query.where(_OPEN)
    query = query.order_by(ALERTS.c.id).limit(params.limit)
    return [_out(row) for row in session.execute(query)]
