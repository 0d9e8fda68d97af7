"""``record``: one health check from a cron probe or script."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer

from cim_monitoring import HealthCheckIn, record_check
from cim_monitoring.cli.console import AsJson, out, usage_error
from cim_monitoring.cli.database import unit_of_work


def record(
    service: Annotated[str, typer.Argument(help="The service probed, e.g. llm-api.")],
    status: Annotated[str, typer.Argument(help="healthy, degraded or down.")],
    latency_ms: Annotated[
        int | None, typer.Option("--latency-ms", help="Response time; omit when none came.")
    ] = None,
    error: Annotated[str | None, typer.Option("--error", help="What went wrong.")] = None,
    detail: Annotated[
        list[str] | None,
        typer.Option("--detail", help="KEY=VALUE probe detail, repeatable; JSON values parse."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="When the check ran, ISO 8601 with offset; default now."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Record one health check, e.g. from a cron probe: `record llm-api down --error timeout`."""
    check = HealthCheckIn.model_validate(
        {
            "service_name": service,
            "status": status,
            "latency_ms": latency_ms,
            "error_message": error,
            "probe_details": _details(detail or []),
            "created_at": _timestamp(at) if at is not None else None,
        }
    )
    with unit_of_work() as session:
        stored = record_check(session, check)
    if as_json:
        typer.echo(stored.model_dump_json(indent=2))
        return
    latency = "no response" if stored.latency_ms is None else f"{stored.latency_ms} ms"
    out.print(
        f"recorded check {stored.id}: {stored.service_name} {stored.status} ({latency}) "
        f"at {stored.created_at.isoformat()}"
    )


def _details(pairs: list[str]) -> dict[str, Any]:
    details: dict[str, Any] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise usage_error(f"--detail {pair!r} is not KEY=VALUE")
        try:
            details[key] = json.loads(value)
        except ValueError:
            details[key] = value  # a bare word is a string
    return details


def _timestamp(raw: str) -> datetime:
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise usage_error(
            f"--at {raw!r} is not an ISO 8601 time; write e.g. 2026-03-01T12:00:00+00:00"
        ) from None
