"""Bad inputs shared by the schema tests and the database tests: (field, value, message part);
and what a refused call names."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from pydantic import ValidationError

from cim_monitoring.schemas import DETAILS_MAX_BYTES, MESSAGE_MAX

CHECK = {"service_name": "api", "status": "healthy"}
ALERT = {
    "service_name": "api",
    "alert_type": "service_down",
    "severity": "critical",
    "message": "m",
}

BAD_CHECK_FIELDS: list[tuple[str, Any, str]] = [
    ("service_name", "", "at least 1 character"),
    ("service_name", "x" * 101, "at most 100 characters"),
    ("service_name", "a\x01b", "control characters"),
    ("service_name", "a\x7fb", "control characters"),
    ("service_name", "a\x9fb", "control characters"),
    ("service_name", "a\nb", "control characters"),
    ("service_name", "a\x00b", "NUL"),
    ("service_name", "\ud800", "unicode string"),
    ("service_name", 7, "valid string"),
    ("status", "ok", "one of healthy, degraded, down"),
    ("status", "HEALTHY", "one of healthy, degraded, down"),
    ("latency_ms", -1, "greater than or equal to 0"),
    ("latency_ms", 1.5, "valid integer"),
    ("latency_ms", 2.0, "valid integer"),
    ("latency_ms", True, "valid integer"),
    ("latency_ms", "12", "valid integer"),
    ("latency_ms", 2**31, "less than or equal to 2147483647"),
    ("probe_details", [], "valid dictionary"),
    ("probe_details", "{}", "valid dictionary"),
    ("probe_details", {"a": float("nan")}, "storable as JSON"),
    ("probe_details", {"a": [1, float("inf")]}, "storable as JSON"),
    ("probe_details", {"a\x00": 1}, "NUL"),
    ("probe_details", {"a": {"b": ["x\x00"]}}, "NUL"),
    ("probe_details", {"a": ("ok", "x\x00")}, "NUL"),
    ("probe_details", {"a": {1, 2}}, "only JSON values"),
    ("probe_details", {"a": "\ud800"}, "storable as JSON"),
    ("probe_details", {"a": "x" * DETAILS_MAX_BYTES}, f"at most {DETAILS_MAX_BYTES} bytes"),
    ("error_message", "", "at least 1 character"),
    ("error_message", "boom\x00", "NUL"),
    ("error_message", "x" * (MESSAGE_MAX + 1), f"at most {MESSAGE_MAX} characters"),
    ("created_at", datetime(2024, 1, 1), "timezone"),
    ("created_at", "2024-01-01T00:00:00", "timezone"),
    ("unexpected", 1, "Extra inputs are not permitted"),
]
BAD_ALERT_FIELDS: list[tuple[str, Any, str]] = [
    ("service_name", "", "at least 1 character"),
    ("service_name", "x" * 101, "at most 100 characters"),
    ("service_name", "a\tb", "control characters"),
    ("alert_type", "", "pattern"),
    ("alert_type", "Service_down", "pattern"),
    ("alert_type", "1st", "pattern"),
    ("alert_type", "service-down", "pattern"),
    ("alert_type", "a" * 64, "pattern"),
    ("alert_type", "down\n", "pattern"),
    ("severity", "fatal", "one of info, warning, critical"),
    ("message", "", "at least 1 character"),
    ("message", "a\x00", "NUL"),
    ("details", ["x"], "valid dictionary"),
    ("details", {"k": float("-inf")}, "storable as JSON"),
    ("details", {"k\x00": "v"}, "NUL"),
    ("details", {"k": "x" * DETAILS_MAX_BYTES}, "bytes"),
]


def refused(call: Callable[[], object]) -> list[tuple[int | str, ...]]:
    """Where the ``ValidationError`` that ``call`` raises locates each of its errors."""
    with pytest.raises(ValidationError) as caught:
        call()
    return [error["loc"] for error in caught.value.errors()]
