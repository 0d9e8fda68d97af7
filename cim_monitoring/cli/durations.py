"""Durations as operators type and read them: ``30s``, ``15m``, ``24h``, ``7d``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import typer

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DISPLAY_UNITS = ((86400, "d"), (3600, "h"), (60, "m"), (1, "s"))


def parse_duration(value: str | timedelta) -> timedelta:
    """``30s``, ``15m``, ``24h``, ``7d``, ``2w`` or a sum such as ``1h30m``; positive only."""
    if isinstance(value, timedelta):
        return value
    compact = value.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise typer.BadParameter(f"{value!r} is not a duration; write e.g. 30s, 15m, 24h or 7d")
    seconds = sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if seconds == 0:
        raise typer.BadParameter(f"{value!r} is zero; a duration must be positive")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise typer.BadParameter(f"{value!r} is too long a duration") from None


def duration_option(flag: str, help: str) -> Any:
    """A command option holding a duration, read by :func:`parse_duration`."""
    return typer.Option(flag, parser=parse_duration, help=help)


def duration_label(span: timedelta) -> str:
    """A window as people write it: ``24h``, ``90m``, ``7d`` (days from two on)."""
    seconds = int(span.total_seconds())
    for size, unit in _DISPLAY_UNITS:
        if seconds % size == 0 and seconds >= size * (2 if unit == "d" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_age(span: timedelta) -> str:
    """The largest whole unit, as narrow as a column allows: ``42s``, ``5m``, ``3h``, ``2d``."""
    seconds = max(int(span.total_seconds()), 0)
    size, unit = next(((s, u) for s, u in _DISPLAY_UNITS if seconds >= s), _DISPLAY_UNITS[-1])
    return f"{seconds // size}{unit}"
