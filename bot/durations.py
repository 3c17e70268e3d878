"""Human durations ("30s", "5m", "1h30m") for DRAIN_EVERY, --max-duration and friends."""

from __future__ import annotations

import re

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_WHOLE = re.compile(r"^(?:\d+(?:ms|s|m|h|d))+$")


def parse_duration_ms(text: str) -> int:
    """Parse "90s", "5m", "1h30m" into milliseconds; raise ValueError with the accepted form."""
    cleaned = text.strip().lower()
    if not _WHOLE.match(cleaned):
        raise ValueError(f"'{text}' is not a duration (use e.g. 30s, 5m, 1h, 1h30m)")
    return sum(int(n) * _UNITS_MS[unit] for n, unit in _PART.findall(cleaned))


def format_duration_ms(ms: int) -> str:
    """The shortest exact spelling: 300000 -> "5m", 5400000 -> "1h30m", 1500 -> "1500ms"."""
    if ms <= 0:
        return "0s"
    parts: list[str] = []
    rest = ms
    for unit in ("d", "h", "m", "s"):
        size = _UNITS_MS[unit]
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    if rest:
        parts.append(f"{rest}ms")
    return "".join(parts)


def humanize_age_ms(ms: int) -> str:
    """An age in words for people at 3 a.m.: "12 s", "42 min", "3 h 5 min", "2 d 4 h"."""
    seconds = max(ms, 0) // 1000
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
