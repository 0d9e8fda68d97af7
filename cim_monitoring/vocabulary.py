"""The words and limits of the monitoring domain, each declared once.

The ORM models turn them into CHECK constraints, the schemas into validation, the repository
into SQL. This module imports nothing of the package, so both sides depend on it and not on each
other. Frozen revisions keep their own literals: history must not change when these do.
"""

from __future__ import annotations

from datetime import UTC, datetime

HEALTH_STATUSES = ("healthy", "degraded", "down")
# In rising order: an open alert's severity only ever escalates along it.
SEVERITIES = ("info", "warning", "critical")
SEVERITY_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}
ALERT_STATUSES = ("active", "acknowledged", "resolved")

# What a caller writes into a health check, in the order COPY streams them (``id`` is the
# database's own).
HEALTH_CHECK_COLUMNS = (
    "service_name",
    "status",
    "latency_ms",
    "probe_details",
    "error_message",
    "created_at",
)

SERVICE_NAME_MAX = 100
# Free-text columns (alert and probe error messages) have no CHECK; this bound keeps one
# misbehaving caller from writing megabytes per row.
MESSAGE_MAX = 10_000
# Serialized (compact JSON, UTF-8) size cap of probe_details / details: a probe or alert that
# wants to attach more than this is attaching a payload, not a diagnosis.
DETAILS_MAX_BYTES = 64 * 1024
# Nesting depth cap of probe_details / details: deeper objects would exhaust the recursion of
# the JSON encoder (here, in psycopg and in PostgreSQL) long before reaching the size cap.
DETAILS_MAX_DEPTH = 64
# The largest value of an ``integer`` column (latencies, histogram bounds).
INT32_MAX = 2**31 - 1

ALERT_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
# ASCII C0 controls, DEL and the C1 block; NUL cannot reach a text column at all.
CONTROL_CHARACTERS_PATTERN = r"[\u0001-\u001f\u007f-\u009f]"

# Time buckets (rollups, chart series) are aligned to the Unix epoch, PostgreSQL's ``date_bin``
# origin too: the same bucket size always yields the same edges, and whole UTC hours and days
# line up with the rollups.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
