"""Human durations ("30s", "5m", "1h30m") for DRAIN_EVERY, --max-duration and friends."""

from __future__ import annotations

import re

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:ms|s|m|h|d))+")

LONGEST_MS = 366 * 86_400_000
"""No duration setting or argument means more than a year; a bigger one is a typo, and
left through it overflows what it reaches (timedelta, the scheduler's interval)."""
CADENCE_MIN_MS = 1000
CADENCE_MAX_MS = 86_400_000
"""A tick cadence (DRAIN_EVERY, `cron every`, `mode cron --every`): 1s to 1 day. The tick
also drives the watcher, the alert sweep and archiving, so a longer one silently stops them."""


def parse_duration_ms(text: str) -> int:
    """Parse "90s", "5m", "1h30m" into milliseconds; raise ValueError with the accepted form."""
    cleaned = text.strip().lower()
    if len(cleaned) > 40 or not _WHOLE.fullmatch(cleaned):
        raise ValueError(f"{text[:40]!r} is not a duration (use e.g. 30s, 5m, 1h, 1h30m)")
    ms = sum(int(n) * _UNITS_MS[unit] for n, unit in _PART.findall(cleaned))
    if ms > LONGEST_MS:
        raise ValueError(f"{cleaned} is longer than a year, the longest duration accepted")
    return ms


def check_cadence_ms(ms: int) -> int:
    """`ms` if it is a cadence the tick can keep (1s to 1d); else one line saying so."""
    if ms < CADENCE_MIN_MS:
        raise ValueError(f"{format_duration_ms(ms)} is shorter than 1s, the fastest cadence")
    if ms > CADENCE_MAX_MS:
        raise ValueError(f"{format_duration_ms(ms)} is longer than 1d, the slowest cadence")
    return ms


def stored_cadence_ms(raw: object) -> int | None:
    """A cadence read back from Redis, kept within 1s..1d: one written before the bound
    existed (or by hand) must not stop the tick. None when it is not a number."""
    try:
        ms = int(str(raw))
    except ValueError:
        return None
    return min(max(ms, CADENCE_MIN_MS), CADENCE_MAX_MS)


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
