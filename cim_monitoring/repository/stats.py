"""Aggregates over raw health checks: per-service statistics and time-bucketed series.

Percentiles are exact over the raw rows and use ``percentile_disc``: each one is a latency that
was actually observed (the nearest-rank method), never an interpolation. Checks without a
latency (no response) count towards the status counts but not the latency figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, DateTime, Float, Integer, Label, Row, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from cim_monitoring.models import HEALTH_STATUSES
from cim_monitoring.repository._common import CHECKS
from cim_monitoring.schemas import ServiceStats, StatusBucket
from cim_monitoring.schemas.params import SeriesParams, StatsParams

# Buckets are aligned to the Unix epoch, so the same bucket size always yields the same edges.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PERCENTILES = (0.5, 0.95, 0.99)


def _counts(status: ColumnElement[str]) -> list[Label[int]]:
    return [func.count().label("total")] + [
        func.count().filter(status == name).label(name) for name in HEALTH_STATUSES
    ]


def service_stats(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    services: Sequence[str] | None = None,
) -> list[ServiceStats]:
    """Per service, its checks in ``[start, end)``: counts by status, uptime, latency figures.

    Uptime is healthy / total: a degraded check does not count as up. Without ``services``
    only services with checks in the range are listed; services named in ``services`` are
    always listed, with zero counts and None figures when they had no checks.
    """
    params = StatsParams(start=start, end=end, services=services)
    percentiles = func.percentile_disc(literal(list(_PERCENTILES), ARRAY(Float))).within_group(
        CHECKS.c.latency_ms
    )
    query = (
        select(
            CHECKS.c.service_name,
            *_counts(CHECKS.c.status),
            percentiles.label("percentiles"),
            func.max(CHECKS.c.latency_ms).label("max_ms"),
        )
        .where(CHECKS.c.created_at >= params.start, CHECKS.c.created_at < params.end)
        .group_by(CHECKS.c.service_name)
        .order_by(CHECKS.c.service_name)
    )
    if params.services is not None:
        query = query.where(CHECKS.c.service_name.in_(params.services))
    found = {row.service_name: _stats(row) for row in session.execute(query)}
    names = sorted(set(params.services)) if params.services is not None else list(found)
    return [found.get(name) or _no_checks(name) for name in names]


def _stats(row: Row[Any]) -> ServiceStats:
    p50, p95, p99 = row.percentiles or (None, None, None)
    return ServiceStats(
        service_name=row.service_name,
        total=row.total,
        healthy=row.healthy,
        degraded=row.degraded,
        down=row.down,
        uptime=row.healthy / row.total,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        max_ms=row.max_ms,
    )


def _no_checks(service_name: str) -> ServiceStats:
    return ServiceStats(
        service_name=service_name,
        total=0,
        healthy=0,
        degraded=0,
        down=0,
        uptime=None,
        p50_ms=None,
        p95_ms=None,
        p99_ms=None,
        max_ms=None,
    )


def status_series(
    session: Session, service: str, *, start: datetime, end: datetime, bucket: timedelta
) -> list[StatusBucket]:
    """``service``'s checks in ``[start, end)`` in epoch-aligned buckets of ``bucket``, oldest
    first; buckets without checks are included with zero counts and ``p95_ms`` None.

    The first bucket starts at or before ``start`` and the last one may reach past ``end``;
    only checks inside ``[start, end)`` are counted.
    """
    params = SeriesParams(service=service, start=start, end=end, bucket=bucket)
    timestamp = DateTime(timezone=True)
    rows = (
        select(
            func.date_bin(params.bucket, CHECKS.c.created_at, EPOCH, type_=timestamp).label(
                "start"
            ),
            CHECKS.c.status,
            CHECKS.c.latency_ms,
        )
        .where(
            CHECKS.c.service_name == params.service,
            CHECKS.c.created_at >= params.start,
            CHECKS.c.created_at < params.end,
        )
        .subquery()
    )
    filled = (
        select(
            rows.c.start,
            *_counts(rows.c.status),
            func.percentile_disc(0.95).within_group(rows.c.latency_ms).label("p95_ms"),
        )
        .group_by(rows.c.start)
        .subquery()
    )
    first = func.date_bin(params.bucket, params.start, EPOCH, type_=timestamp)
    edges = select(
        func.generate_series(first, params.end, params.bucket, type_=timestamp).label("start")
    ).subquery()
    zero = literal(0, Integer)
    query = (
        select(
            edges.c.start,
            *(
                func.coalesce(filled.c[name], zero).label(name)
                for name in ("total", *HEALTH_STATUSES)
            ),
            filled.c.p95_ms,
        )
        .select_from(edges.outerjoin(filled, filled.c.start == edges.c.start))
        .where(edges.c.start < params.end)
        .order_by(edges.c.start)
    )
    return [StatusBucket.model_validate(row) for row in session.execute(query)]
