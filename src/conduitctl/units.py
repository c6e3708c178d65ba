"""Parsing of the human units used in conduit.toml: sizes ("512m") and durations ("10s").

Pure functions; they raise ValueError with a message that pydantic turns into a config error.
"""

from __future__ import annotations

import re

_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.IGNORECASE)


def parse_size(value: str | int) -> int:
    """Bytes from docker-style sizes: 1048576, "512m", "1g", "64MiB". Binary units."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512m or 1g")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError("expected a size such as 512m or 1g")
    number, unit = match.groups()
    return int(float(number) * _SIZE_UNITS[unit.lower()])


def format_size(n_bytes: int) -> str:
    """Docker-style size, the largest unit that divides exactly: 536870912 -> "512m"."""
    for unit in ("t", "g", "m", "k"):
        factor = _SIZE_UNITS[unit]
        if n_bytes >= factor and n_bytes % factor == 0:
            return f"{n_bytes // factor}{unit}"
    return str(n_bytes)


def parse_duration(value: str | float | int) -> float:
    """Seconds from 1.5, "500ms", "10s", "5m", "4h", "1d". A bare number means seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 10s or 5m")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    match = _DURATION_RE.match(str(value))
    if not match:
        raise ValueError("expected a duration such as 500ms, 10s, 5m or 4h")
    number, unit = match.groups()
    return float(number) * _DURATION_UNITS[(unit or "s").lower()]


def format_duration(seconds: float) -> str:
    """Compact duration for configs: 10.0 -> "10s", 14400 -> "4h", 0.5 -> "500ms"."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    for unit in ("d", "h", "m"):
        factor = _DURATION_UNITS[unit]
        if seconds >= factor and seconds % factor == 0:
            return f"{int(seconds // factor)}{unit}"
    return f"{seconds:g}s"
