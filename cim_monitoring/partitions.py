"""The daily partitions of ``service_health_checks``: their names, and the upkeep that makes
them ahead of the rows and drops expired days whole.

The migrations create both upkeep functions in the private schema as SECURITY DEFINER, EXECUTE
for ``monitoring_admin`` alone: the production role (a member of it, not the tables' owner)
calls them, and they give every new partition the parent's row level security, policies and
grants. ``migrate`` and every purge make today and the next :data:`DAYS_AHEAD` days.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

# A clock running ahead, or an upkeep missed for a week, still finds its day's partition.
DAYS_AHEAD = 7
PARENT = "service_health_checks"
DEFAULT_PARTITION = f"{PARENT}_default"
# pYYYYMMDD for a day; pYYYYMMDD_YYYYMMDD (first and last day) for the table a migration
# attached as the partition of all its days.
_PARTITION_NAME = re.compile(rf"{PARENT}_(?:p\d{{8}}(?:_\d{{8}})?|default)")

_ADD = text(f"SELECT cim_monitoring.{PARENT}_add_partitions(:first_day, :days)")
_DROP = text(f"SELECT cim_monitoring.{PARENT}_drop_partitions(:before)")
_NOW = text("SELECT now()")
_CAN_ADD = text(
    f"SELECT has_function_privilege(to_regprocedure('cim_monitoring.{PARENT}_add_partitions"
    "(date, integer)'), 'EXECUTE')"
)


def is_partition(table: str | None) -> bool:
    """Whether ``table`` is named as a partition of the health checks is."""
    return table is not None and _PARTITION_NAME.fullmatch(table) is not None


def add_partitions(bind: Connection | Session, today: date, *, days_ahead: int = DAYS_AHEAD) -> int:
    """Make the default partition if missing, and the partition of ``today`` and each of the
    ``days_ahead`` days after it that has none; return how many were made. Idempotent; safe
    beside writers, readers and another upkeep (they queue on an advisory lock)."""
    return int(bind.execute(_ADD, {"first_day": today, "days": days_ahead + 1}).scalar_one())


def can_add_partitions(bind: Connection | Session) -> bool:
    """Whether the upkeep exists (the database is migrated far enough) and this role may run it."""
    return bool(bind.execute(_CAN_ADD).scalar_one())


def drop_partitions(bind: Connection | Session, before: datetime) -> int | None:
    """Drop every day partition that ends at or before ``before``; return how many rows went
    with them, or None when the table could not be locked within the upkeep's lock_timeout
    (nothing was dropped: a long query holds it)."""
    dropped = bind.execute(_DROP, {"before": before}).scalar_one()
    return None if dropped is None else int(dropped)


def utc_day(moment: datetime) -> date:
    """The UTC day of ``moment``: partitions are UTC days whatever the session's TimeZone."""
    return moment.astimezone(UTC).date()


def database_today(bind: Connection | Session) -> date:
    """Today (UTC) by the database's clock."""
    return utc_day(bind.execute(_NOW).scalar_one())
