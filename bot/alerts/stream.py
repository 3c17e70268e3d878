"""The alert stream: every accepted notification is written here before intake answers 200.

A Redis stream with one consumer group. Intake appends and wakes the in-process worker
(an asyncio.Event: no Redis polling, no blocking reads). The worker reads new entries
without blocking, handles them, and acks. An entry whose handling failed (Slack down, a
crash) stays pending; the recovery sweep, riding on the scheduler's tick, claims entries
idle for a while and hands them to the worker again. So a crash after the 200 loses
nothing, and a Slack outage is retried.

What is kept: only handled entries are ever trimmed (append_alert.lua), and over
MAX_UNHANDLED unhandled entries intake is refused with a 503 so Alertmanager keeps the
alert and sends it again. An entry that cannot be read, or keeps failing for a reason
other than an outage, is moved to the dead-letter stream `<key>:dead` (still kept, shown
by /readyz and /metrics) so it stops taking turns from the others. The sweep walks the
pending list with a cursor, so however many entries keep failing, every one gets its turn.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bot.alerts.models import AlertEvent
from bot.metrics import ALERTS_PARKED

GROUP = "incidents"
TRIM_OVER = 1_000
"""Handled entries are trimmed once the stream holds more than this (a little history)."""
MAX_UNHANDLED = 10_000
"""Pending plus not yet read: over this, intake answers 503 instead of storing."""
START = "0-0"


class BacklogFull(Exception):
    """Too many alerts are waiting to be handled: refuse, so the sender keeps this one."""

    def __init__(self, unhandled: int) -> None:
        super().__init__(f"{unhandled} alerts are waiting to be handled")
        self.unhandled = unhandled


@dataclass(frozen=True)
class StoredAlert:
    """One stream entry: its event, or why it could not be read back (then `event` is None)."""

    entry_id: str
    raw: str
    event: AlertEvent | None
    problem: str = ""


@dataclass(frozen=True)
class StreamStats:
    unhandled: int
    dead_lettered: int


@dataclass
class AlertStream:
    redis: Redis
    key: str
    consumer: str
    max_unhandled: int = MAX_UNHANDLED
    trim_over: int = TRIM_OVER
    _group_ready: bool = False
    _cursor: str = START
    _append: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._append = self.redis.register_script(
            resources.files("bot.alerts").joinpath("lua", "append_alert.lua").read_text()
        )

    @property
    def dead_key(self) -> str:
        return f"{self.key}:dead"

    @property
    def failures_key(self) -> str:
        """entry id -> failed attempts that were not outages (cleared on ack or park)."""
        return f"{self.key}:failures"

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
        """Store the event; BacklogFull when MAX_UNHANDLED entries wait already."""
        entry_id, unhandled = await self._append(
            keys=[self.key],
            args=[GROUP, event.model_dump_json(), self.trim_over, self.max_unhandled],
        )
        if not entry_id:
            raise BacklogFull(int(unhandled))
        return str(entry_id)

    @staticmethod
    def _decode(rows: Any) -> list[StoredAlert]:
        out = []
        for entry_id, fields in rows:
            if not fields:  # deleted while pending: nothing left to handle
                continue
            raw = str(fields.get("event", ""))
            try:
                event = AlertEvent.model_validate(json.loads(raw))
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(p) for p in first.get("loc", ())) or "event"
                out.append(StoredAlert(str(entry_id), raw, None, f"{where}: {first['msg']}"))
                continue
            except ValueError as err:
                out.append(StoredAlert(str(entry_id), raw, None, f"not JSON: {err}"))
                continue
            out.append(StoredAlert(str(entry_id), raw, event))
        return out

    async def take_new(self, count: int = 100) -> list[StoredAlert]:
        """New entries for this consumer; returns at once when there are none."""
        await self.ensure_group()
        reply = await self.redis.xreadgroup(GROUP, self.consumer, {self.key: ">"}, count=count)
        if not reply:
            return []
        # RESP2 answers [[key, rows]], RESP3 {key: [rows]}
        rows = next(iter(reply.values()))[0] if isinstance(reply, dict) else reply[0][1]
        return self._decode(rows)

    async def take_stale(
        self, min_idle_ms: int, count: int = 100
    ) -> tuple[list[StoredAlert], bool]:
        """Entries another attempt left pending for `min_idle_ms`, claimed for a retry, from
        where the last call stopped; True once the walk reached the end of the pending list
        (the next call starts from the beginning again)."""
        await self.ensure_group()
        reply = await self.redis.xautoclaim(
            self.key,
            GROUP,
            self.consumer,
            min_idle_time=min_idle_ms,
            start_id=self._cursor,
            count=count,
        )
        self._cursor = str(reply[0])
        return self._decode(reply[1]), self._cursor == START

    async def ack(self, entry_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.key, GROUP, entry_id)
            pipe.hdel(self.failures_key, entry_id)
            await pipe.execute()

    async def count_failure(self, entry_id: str) -> int:
        """One more failed attempt of this entry (not an outage); how many so far."""
        return int(await self.redis.hincrby(self.failures_key, entry_id, 1))

    async def park(self, stored: StoredAlert, reason: str, failures: int) -> None:
        """Move the entry to the dead-letter stream and ack it, in one transaction: it is
        kept, whole, for a person to look at, and no longer retried."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.dead_key,
                {
                    "entry": stored.entry_id,
                    "event": stored.raw,
                    "reason": reason[:1000],
                    "failures": failures,
                    "parked_at_ms": int(time.time() * 1000),
                },
            )
            pipe.xack(self.key, GROUP, stored.entry_id)
            pipe.hdel(self.failures_key, stored.entry_id)
            await pipe.execute()
        ALERTS_PARKED.inc()

    async def pending(self) -> int:
        info = await self.redis.xpending(self.key, GROUP)
        return int(info["pending"]) if info else 0

    async def stats(self) -> StreamStats:
        """Unhandled entries (pending plus not yet read) and dead-lettered ones: three Redis
        commands, sent only when /readyz or /metrics asks."""
        dead = int(await self.redis.xlen(self.dead_key))
        length = int(await self.redis.xlen(self.key))
        if not length:
            return StreamStats(0, dead)
        try:
            groups = await self.redis.xinfo_groups(self.key)
        except ResponseError:  # no stream yet
            groups = []
        ours = [g for g in groups if str(g.get("name")) == GROUP]
        if not ours:
            return StreamStats(length, dead)
        lag = ours[0].get("lag")
        if lag is None:  # Redis cannot tell; at most everything after the last read
            after = await self.redis.xrange(
                self.key, f"({ours[0]['last-delivered-id']}", "+", count=self.max_unhandled
            )
            lag = len(after or [])
        return StreamStats(int(ours[0]["pending"]) + int(lag), dead)
