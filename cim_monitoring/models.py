"""ORM models: the schema contract of DESIGN.md, mirrored exactly by the migrations.

Statuses are TEXT with named CHECK constraints rather than PostgreSQL enums (cheap to extend,
no type to migrate). Every constraint and index gets its name from one naming convention, so
``alembic check`` compares them by name and a changed CHECK must get a new one.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
    event,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cim_monitoring.errors import ConfigurationError
from cim_monitoring.vocabulary import (
    ALERT_STATUSES,
    ALERT_TYPE_PATTERN,
    CONTROL_CHARACTERS_PATTERN,
    HEALTH_STATUSES,
    SERVICE_NAME_MAX,
    SEVERITIES,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _service_name_check() -> CheckConstraint:
    return CheckConstraint(
        f"char_length(service_name) BETWEEN 1 AND {SERVICE_NAME_MAX} "
        f"AND service_name !~ '{CONTROL_CHARACTERS_PATTERN}'",
        name="service_name_valid",
    )


def _object_check(column: str) -> CheckConstraint:
    return CheckConstraint(f"jsonb_typeof({column}) = 'object'", name=f"{column}_is_object")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute as is
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
        str: Text,
    }


class ServiceHealthCheck(Base):
    """One probe of one service. Append-only: rows change only by insert; purge drops whole
    days and deletes the rest. Range-partitioned on ``created_at``, one partition per UTC day
    and a default one (the migrations and :mod:`cim_monitoring.partitions` make them), so the
    key is in the primary key."""

    __tablename__ = "service_health_checks"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    service_name: Mapped[str]
    status: Mapped[str]
    latency_ms: Mapped[int | None]
    probe_details: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    error_message: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"), primary_key=True)

    __table_args__ = (
        _service_name_check(),
        CheckConstraint(_in("status", HEALTH_STATUSES), name="status_valid"),
        CheckConstraint("latency_ms >= 0", name="latency_ms_non_negative"),
        _object_check("probe_details"),
        Index(None, "created_at"),
        {"postgresql_partition_by": "RANGE (created_at)"},
    )


# Newest-first per service: latest status and per-service history walk it without sorting.
Index(
    "ix_service_health_checks_service_name_created_at",
    ServiceHealthCheck.service_name,
    ServiceHealthCheck.created_at.desc(),
)


class AlertEvent(Base):
    """One alert about a service and its whole lifecycle: active → acknowledged → resolved."""

    __tablename__ = "alert_events"

    id: Mapped[uuid.UUID] = mapped_column(
        Uuid, primary_key=True, server_default=text("gen_random_uuid()")
    )
    service_name: Mapped[str]
    alert_type: Mapped[str]
    severity: Mapped[str]
    status: Mapped[str] = mapped_column(server_default=text("'active'"))
    message: Mapped[str]
    details: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    occurrence_count: Mapped[int] = mapped_column(server_default=text("1"))
    last_seen_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None]
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None]

    __table_args__ = (
        _service_name_check(),
        CheckConstraint(f"alert_type ~ '{ALERT_TYPE_PATTERN}'", name="alert_type_slug"),
        CheckConstraint(_in("severity", SEVERITIES), name="severity_valid"),
        CheckConstraint(_in("status", ALERT_STATUSES), name="status_valid"),
        _object_check("details"),
        CheckConstraint("occurrence_count >= 1", name="occurrence_count_positive"),
        CheckConstraint(
            "(status = 'active' AND acknowledged_at IS NULL AND resolved_at IS NULL)"
            " OR (status = 'acknowledged' AND acknowledged_at IS NOT NULL AND resolved_at IS NULL)"
            " OR (status = 'resolved' AND resolved_at IS NOT NULL)",
            name="status_timestamps_consistent",
        ),
        CheckConstraint(
            "(acknowledged_at IS NULL) = (acknowledged_by IS NULL)"
            " AND (resolved_at IS NULL) = (resolved_by IS NULL)",
            name="actor_recorded",
        ),
        Index(None, "created_at"),
        Index(
            "uq_alert_events_open_service_name_alert_type",
            "service_name",
            "alert_type",
            unique=True,
            postgresql_where=text("status <> 'resolved'"),
        ),
        # active_alerts reads the few open alerts newest first, never the resolved history.
        Index(
            "ix_alert_events_open_created_at",
            text("created_at DESC"),
            text("id DESC"),
            postgresql_where=text("status <> 'resolved'"),
        ),
    )


# Buckets of the latency histogram; cim_monitoring.histogram defines their bounds.
LATENCY_BUCKETS = 106


class _Rollup:
    """What the hourly and daily rollups share: per service and UTC bucket, exact counts by
    status, latency count/min/max/sum and the fixed latency histogram. A trigger on
    service_health_checks keeps them in step with every insert; they outlive raw retention."""

    service_name: Mapped[str] = mapped_column(primary_key=True)
    healthy: Mapped[int] = mapped_column(Integer)
    degraded: Mapped[int] = mapped_column(Integer)
    down: Mapped[int] = mapped_column(Integer)
    latency_count: Mapped[int] = mapped_column(Integer)
    latency_min: Mapped[int | None] = mapped_column(Integer)
    latency_max: Mapped[int | None] = mapped_column(Integer)
    latency_sum: Mapped[int] = mapped_column(BigInteger)
    latency_histogram: Mapped[list[int]] = mapped_column(ARRAY(Integer))


def _histogram_check() -> CheckConstraint:
    return CheckConstraint(
        f"cardinality(latency_histogram) = {LATENCY_BUCKETS}", name="latency_histogram_buckets"
    )


def _time_index(column: str) -> Index:
    """By time, holding each row's service and extremes: the extremes of a time range, and
    its services, are read from the index alone."""
    return Index(None, column, postgresql_include=["service_name", "latency_min", "latency_max"])


class ServiceHealthHourly(_Rollup, Base):
    __tablename__ = "service_health_hourly"

    hour: Mapped[datetime] = mapped_column(primary_key=True)

    __table_args__ = (_histogram_check(), _time_index("hour"))


class ServiceHealthDaily(_Rollup, Base):
    __tablename__ = "service_health_daily"

    day: Mapped[datetime] = mapped_column(primary_key=True)

    __table_args__ = (_histogram_check(), _time_index("day"))


class ServiceHealthState(Base):
    """The newest check of one service by ``(created_at, id)``, kept by a trigger on
    service_health_checks in the inserting transaction; an older check never replaces it."""

    __tablename__ = "service_health_state"

    service_name: Mapped[str] = mapped_column(primary_key=True)
    status: Mapped[str]
    latency_ms: Mapped[int | None]
    checked_at: Mapped[datetime]
    check_id: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        _service_name_check(),
        CheckConstraint(_in("status", HEALTH_STATUSES), name="status_valid"),
        CheckConstraint("latency_ms >= 0", name="latency_ms_non_negative"),
        # Rewritten on every insert: room on each page keeps the updates in place (HOT).
        {"postgresql_with": {"fillfactor": 50}},
    )


class ServiceHealthChange(Base):
    """A check whose status differs from its service's previous check by ``(created_at, id)``
    (the first check of a service: from None). Kept by the same trigger, backfills merged;
    purged with the rollups, each service's newest change kept."""

    __tablename__ = "service_health_changes"

    service_name: Mapped[str] = mapped_column(primary_key=True)
    changed_at: Mapped[datetime] = mapped_column(primary_key=True, index=True)
    check_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    from_status: Mapped[str | None]
    to_status: Mapped[str]

    __table_args__ = (
        _service_name_check(),
        CheckConstraint(_in("from_status", HEALTH_STATUSES), name="from_status_valid"),
        CheckConstraint(_in("to_status", HEALTH_STATUSES), name="to_status_valid"),
        CheckConstraint("from_status IS DISTINCT FROM to_status", name="is_a_change"),
    )


class ServiceHealthTotal(Base):
    """Per service and UTC hour, the running totals of its checks up to the end of that hour:
    counts by status and the latency histogram (without its trailing empty buckets). The
    checks of any span of whole hours are the difference of two rows; kept by a trigger on
    service_health_checks for every hour the hourly rollup has, purged with the rollups."""

    __tablename__ = "service_health_totals"

    service_name: Mapped[str] = mapped_column(primary_key=True)
    # The hour index finds every service's row of one hour at once.
    hour: Mapped[datetime] = mapped_column(primary_key=True, index=True)
    healthy: Mapped[int] = mapped_column(BigInteger)
    degraded: Mapped[int] = mapped_column(BigInteger)
    down: Mapped[int] = mapped_column(BigInteger)
    latency_histogram: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))

    __table_args__ = (
        _service_name_check(),
        CheckConstraint("LEAST(healthy, degraded, down) >= 0", name="counts_non_negative"),
        CheckConstraint(
            f"cardinality(latency_histogram) <= {LATENCY_BUCKETS}",
            name="latency_histogram_buckets",
        ),
        # The current hour's row is rewritten by every insert: room on each page keeps the
        # updates in place (HOT).
        {"postgresql_with": {"fillfactor": 70}},
    )


def _refuse_create(table: Table, *_: Any, **__: Any) -> None:
    raise ConfigurationError(
        f"{table.name} is created by cim-monitoring's migrations, not by create_all(): the "
        "rollup triggers, their functions and row level security would be missing; call "
        "cim_monitoring.migrations.upgrade(engine) (e.g. in your test suite's database fixture)"
    )


# An application's test suite that calls Base.metadata.create_all() would get tables that look
# right and behave wrong; it fails here, loudly, before anything is created.
for _table in Base.metadata.tables.values():
    event.listen(_table, "before_create", _refuse_create)
