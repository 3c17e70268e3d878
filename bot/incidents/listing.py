"""Reading incidents in bulk, for the surfaces that list them (the App Home, the daily
digest, the timeline shortcut's picker): several hashes in one pipeline, each parsed as far
as a list shows it, and an incident whose hash is gone or half-written left out rather
than failing the whole list.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.incidents.channels import Incidents

INCIDENTS_READ = 200
"""Open incidents read at most to sort them (the open set is not scored by age)."""


def parse_incident(iid: str, raw: dict[str, str]) -> dict[str, Any] | None:
    """An incident hash as `Incidents.load` reads it (the fields shown here), or None when
    the hash is gone or was never complete."""
    try:
        event = json.loads(raw["event"])
        found: dict[str, Any] = {
            "id": iid,
            "title": str(event.get("title") or iid),
            "queues": [str(q) for q in event.get("queues") or []],
            "labels": dict(event.get("labels") or {}),
        }
    except (KeyError, ValueError, TypeError, AttributeError):
        return None
    found.update({k: v for k, v in raw.items() if k != "event"})
    for k in ("opened_at", "resolved_at", "updated_at"):
        found[k] = int(raw[k]) if raw.get(k, "").isdigit() else None
    return found


async def read_incidents(incidents: Incidents, ids: Sequence[str]) -> list[dict[str, Any]]:
    """These incidents, in one pipeline (one round trip), those that exist."""
    if not ids:
        return []
    async with incidents.redis.pipeline(transaction=False) as pipe:
        for iid in ids:
            pipe.hgetall(f"{incidents.state_prefix}:incident:{iid}")
        rows = await pipe.execute()
    found = []
    for iid, row in zip(ids, rows, strict=True):
        parsed = parse_incident(iid, {str(k): str(v) for k, v in (row or {}).items()})
        if parsed is not None:
            found.append(parsed)
    return found


async def open_incidents(incidents: Incidents) -> tuple[list[dict[str, Any]], int]:
    """(the open incidents, newest first, at most INCIDENTS_READ of them; how many are open).
    An entry resolved without its ZREM (a crash) is left out, and not counted."""
    async with incidents.redis.pipeline(transaction=False) as pipe:
        pipe.zcard(incidents.open_key)
        pipe.zrange(incidents.open_key, 0, INCIDENTS_READ - 1)
        total, ids = await pipe.execute()
    found = [
        i
        for i in await read_incidents(incidents, [str(i) for i in ids])
        if i.get("status") != "resolved"
    ]
    found.sort(key=lambda i: i["opened_at"] or 0, reverse=True)
    return found, int(total) - (len(ids) - len(found))
