"""The alert stream: every accepted notification is written here before intake answers 200.

A Redis stream with one consumer group. Intake appends and wakes the in-process worker
(an asyncio.Event: no Redis polling, no blocking reads). The worker reads new entries
without blocking, handles them, and acks. An entry whose handling failed (Slack down, a
crash) stays pending; the recovery sweep, riding on the scheduler's tick, claims entries
idle for a while and hands them to the worker again. So a crash after the 200 loses
nothing, and a Slack outage is retried.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bot.alerts.models import AlertEvent

GROUP = "incidents"
MAXLEN = 10_000


@dataclass
class AlertStream:
    redis: Redis
    key: str
    consumer: str
    _group_ready: bool = False

    async def ensure_group(self) -> None:
        """Create the consumer group, once per process, before the first read (from id 0,
        so entries written before it existed are read too); another replica's is reused."""
        if self._group_ready:
            return
        try:
            await self.redis.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise
        self._group_ready = True

    async def append(self, event: AlertEvent) -> str:
        entry_id = await self.redis.xadd(
            self.key, {"event": event.model_dump_json()}, maxlen=MAXLEN, approximate=True
        )
        return str(entry_id)

    @staticmethod
    def _decode(rows: Any) -> list[tuple[str, AlertEvent]]:
        out = []
        for entry_id, fields in rows:
            if fields and "event" in fields:
                out.append((str(entry_id), AlertEvent.model_validate(json.loads(fields["event"]))))
        return out

    async def take_new(self, count: int = 100) -> list[tuple[str, AlertEvent]]:
        """New entries for this consumer; returns at once when there are none."""
        await self.ensure_group()
        reply = await self.redis.xreadgroup(GROUP, self.consumer, {self.key: ">"}, count=count)
        if not reply:
            return []
        # RESP2 answers [[key, rows]], RESP3 {key: [rows]}
        rows = next(iter(reply.values()))[0] if isinstance(reply, dict) else reply[0][1]
        return self._decode(rows)

    async def take_stale(self, min_idle_ms: int, count: int = 100) -> list[tuple[str, AlertEvent]]:
        """Entries another attempt left pending for `min_idle_ms`: claimed for a retry."""
        await self.ensure_group()
        reply = await self.redis.xautoclaim(
            self.key,
            GROUP,
            self.consumer,
            min_idle_time=min_idle_ms,
            start_id="0-0",
            count=count,
        )
        return self._decode(reply[1])

    async def ack(self, entry_id: str) -> None:
        await self.redis.xack(self.key, GROUP, entry_id)

    async def pending(self) -> int:
        info = await self.redis.xpending(self.key, GROUP)
        return int(info["pending"]) if info else 0
