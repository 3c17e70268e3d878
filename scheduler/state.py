"""The drain cron's state, in Redis so `queueops serve` and a CLI on another host agree:
mode, pause, cadence, the leader lease, tick bookkeeping and the capped history.

`<state>:cron` (hash): mode (cron | always-on), paused, every_ms, last_tick, idle_ticks,
last_idle, last_drain, failed_streak. `<state>:cron:lease` (string, with expiry): the
replica that runs the cron. `<state>:cron:history` (list, newest first, capped): one entry
per tick that drained or failed, like cron-job.org's execution history. Idle ticks are
recorded by the tick's own command (bot/queues/bullmq/lua/probe.lua, extra "cron").
"""

from __future__ import annotations

import json
import math
import time
from typing import Literal

from pydantic import BaseModel
from redis.asyncio import Redis

from bot.durations import stored_cadence_ms

Mode = Literal["cron", "always-on"]
HISTORY_MAX = 200

# Record a drain only while still holding the lease (fencing: a replica that lost it while
# its drain ran must not write over the new leader's history).
_RECORD = """
if redis.call("GET", KEYS[2]) ~= ARGV[1] then return -1 end
redis.call("LPUSH", KEYS[3], ARGV[2])
redis.call("LTRIM", KEYS[3], 0, tonumber(ARGV[4]) - 1)
redis.call("HSET", KEYS[1], "last_drain", ARGV[3])
if ARGV[5] == "1" then
  return redis.call("HINCRBY", KEYS[1], "failed_streak", 1)
end
redis.call("HSET", KEYS[1], "failed_streak", 0)
return 0
"""

# The lease is only ever extended or dropped by the replica holding it (compare, then act,
# in one script so a lease that changed hands in between is left alone).
_RENEW = """
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call("PEXPIRE", KEYS[1], ARGV[2])
"""
_RELEASE = """
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call("DEL", KEYS[1])
"""


class DrainRun(BaseModel):
    """One tick that called the app: what cron-job.org's execution history shows."""

    at_ms: int
    queues: list[str]
    status: int | None
    processed: int = 0
    failed: int = 0
    duration_ms: int = 0
    error: str | None = None
    trigger: str = "tick"
    """What started it: "tick" (the cadence) or "wake" (a queue's marker: instant drains)."""


class CronStatus(BaseModel):
    mode: Mode
    paused: bool
    every_ms: int
    last_tick_ms: int | None
    idle_ticks: int
    last_drain_ms: int | None
    failed_streak: int
    leader: str | None
    idle_tick_cost: int | None
    wake_cost: int | None = None
    """Blocking commands the instant drains sent over the leader's last idle cadence (as it
    measured them); None while instant drains are off."""

    @property
    def enabled(self) -> bool:
        return self.mode == "cron" and not self.paused

    def wake_blocks(self, every_ms: int, wake_max_ms: int | None) -> int:
        """The instant drains' blocking commands over an idle cadence of `every_ms`: what the
        leader measured when that is the cadence it ran, else what one should cost."""
        if self.wake_cost is not None and every_ms == self.every_ms:
            return self.wake_cost
        return wake_blocks_per_cadence(every_ms, wake_max_ms)


class CronState:
    def __init__(
        self, redis: Redis, state_prefix: str, *, default_mode: Mode, default_every_ms: int
    ) -> None:
        self.redis = redis
        self.key = f"{state_prefix}:cron"
        self.lease_key = f"{state_prefix}:cron:lease"
        self.history_key = f"{state_prefix}:cron:history"
        self.default_mode = default_mode
        self.default_every_ms = default_every_ms
        self._record = redis.register_script(_RECORD)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def status(self) -> CronStatus:
        raw = {str(k): str(v) for k, v in (await self.redis.hgetall(self.key)).items()}
        leader = await self.redis.get(self.lease_key)

        def num(field: str) -> int | None:
            return int(raw[field]) if raw.get(field) else None

        mode = raw.get("mode", self.default_mode)
        return CronStatus(
            mode=mode if mode in ("cron", "always-on") else self.default_mode,
            paused=raw.get("paused") == "1",
            every_ms=stored_cadence_ms(raw.get("every_ms", "")) or self.default_every_ms,
            last_tick_ms=num("last_tick"),
            idle_ticks=num("idle_ticks") or 0,
            last_drain_ms=num("last_drain"),
            failed_streak=num("failed_streak") or 0,
            idle_tick_cost=num("idle_tick_cost"),
            wake_cost=num("wake_cost"),
            leader=str(leader) if leader else None,
        )

    async def adopt_mode(self, mode: Mode) -> bool:
        """Record `mode` unless one is recorded already (what the backend says, at start)."""
        return bool(await self.redis.hsetnx(self.key, "mode", mode))

    async def set_mode(self, mode: Mode) -> None:
        await self.redis.hset(self.key, "mode", mode)

    async def set_paused(self, paused: bool) -> None:
        await self.redis.hset(self.key, "paused", "1" if paused else "0")

    async def set_every(self, every_ms: int) -> None:
        await self.redis.hset(self.key, "every_ms", every_ms)

    async def record(self, run: DrainRun, owner: str) -> int:
        """Append to the history (if `owner` still leads); returns the failure streak, or -1
        when the lease was lost meanwhile."""
        return int(
            await self._record(
                keys=[self.key, self.lease_key, self.history_key],
                args=[
                    owner,
                    run.model_dump_json(),
                    run.at_ms,
                    HISTORY_MAX,
                    "1" if run.error else "0",
                ],
            )
        )

    async def renew_lease(self, owner: str, ttl_ms: int) -> bool:
        """Extend the lease while a drain runs; False when `owner` no longer holds it."""
        return bool(await self._renew(keys=[self.lease_key], args=[owner, ttl_ms]))

    async def release_lease(self, owner: str) -> bool:
        """Give the lease up (a clean stop) so another replica leads from its next tick."""
        return bool(await self._release(keys=[self.lease_key], args=[owner]))

    async def history(self, count: int = 20) -> list[DrainRun]:
        rows = await self.redis.lrange(self.history_key, 0, count - 1)
        return [DrainRun.model_validate(json.loads(r)) for r in rows]


def wake_block_ms(every_ms: int, wake_max_ms: int | None) -> int:
    """One blocking wait of the instant drains: the cadence, or DRAIN_WAKE_MAX if shorter."""
    return min(every_ms, wake_max_ms) if wake_max_ms else every_ms


def wake_blocks_per_cadence(every_ms: int, wake_max_ms: int | None) -> int:
    """What the instant drains should cost over an idle cadence: one blocking command per
    wait (scheduler/instant.py measures what they really sent)."""
    return math.ceil(every_ms / wake_block_ms(every_ms, wake_max_ms))


def now_ms() -> int:
    return int(time.time() * 1000)
