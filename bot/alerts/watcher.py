"""The watcher: built-in alert rules (depth, oldest job, DLQ growth, failed ratio)
evaluated on what each tick already read, adding no Redis polling of its own. A breach
opens an incident through the same path as an Alertmanager alert (the stream); its end
resolves it.

Rules, per queue: depth over WATCH_DEPTH, oldest runnable job older than WATCH_OLDEST,
DLQ growing since the last tick, failed ratio over WATCH_FAILED_PCT among jobs finished
since the last tick (at least 5 failures, so one bad job in three is not a page).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

from bot.alerts.models import AlertEvent, Status
from bot.durations import humanize_age_ms
from bot.queues.models import ProbeResult, QueueWork

log = logging.getLogger(__name__)

MIN_FAILURES = 5


@dataclass(frozen=True)
class WatchRules:
    depth: int = 1000
    oldest_ms: int = 15 * 60_000
    failed_pct: float = 10.0
    dlq_growth: bool = True


@dataclass(frozen=True)
class Breach:
    rule: str
    queue: str
    title: str
    summary: str

    @property
    def group_key(self) -> str:
        return f"watcher:{self.rule}:{self.queue}"


def breaches(
    rules: WatchRules, now: QueueWork, before: QueueWork | None, at_ms: int
) -> list[Breach]:
    found = []
    q = now.shown
    if rules.depth and now.ready > rules.depth:
        found.append(
            Breach("depth", q, "QueueDepth", f"{q}: {now.ready} jobs waiting (over {rules.depth})")
        )
    if rules.oldest_ms and now.oldest_runnable_since_ms is not None and not now.is_paused:
        age = at_ms - now.oldest_runnable_since_ms
        if age > rules.oldest_ms:
            found.append(
                Breach(
                    "oldest",
                    q,
                    "QueueOldestJob",
                    f"{q}: oldest job waiting {humanize_age_ms(age)} "
                    f"(over {humanize_age_ms(rules.oldest_ms)})",
                )
            )
    if before is not None:
        if rules.dlq_growth and now.dlq_depth > before.dlq_depth:
            found.append(
                Breach(
                    "dlq",
                    q,
                    "DLQGrowth",
                    f"{now.dlq_shown or q + '-dlq'} grew from {before.dlq_depth} to "
                    f"{now.dlq_depth}",
                )
            )
        failed = max(0, now.failed - before.failed)
        done = max(0, now.completed - before.completed)
        if (
            rules.failed_pct
            and failed >= MIN_FAILURES
            and 100 * failed / (failed + done) > rules.failed_pct
        ):
            found.append(
                Breach(
                    "failed",
                    q,
                    "FailedRatio",
                    f"{q}: {failed} of {failed + done} jobs failed since the last "
                    f"check (over {rules.failed_pct:g}%)",
                )
            )
    return found


class Watcher:
    def __init__(
        self,
        rules: WatchRules,
        emit: Callable[[AlertEvent], Awaitable[None]],
        redis: Redis,
        state_prefix: str,
    ) -> None:
        self.rules = rules
        self.emit = emit
        self.redis = redis
        self.key = f"{state_prefix}:watcher:active"
        self._before: dict[str, QueueWork] = {}
        self._active: dict[str, Breach] | None = None

    async def on_tick(self, result: ProbeResult) -> None:
        if self._active is None:  # once per process: what an earlier run left firing
            keys = [str(m) for m in await self.redis.smembers(self.key)]
            self._active = {
                k: Breach(rule=k.split(":")[1], queue=k.split(":", 2)[2], title="", summary="")
                for k in keys
            }
        found = {
            b.group_key: b
            for q in result.queues
            for b in breaches(self.rules, q, self._before.get(q.shown), result.at_ms)
        }
        self._before = {q.shown: q for q in result.queues}
        at = datetime.fromtimestamp(result.at_ms / 1000, tz=UTC)
        for key, breach in found.items():
            if key not in self._active:
                await self.emit(self._event(breach, "firing", at))
                await self.redis.sadd(self.key, key)
        for key, breach in list(self._active.items()):
            if key not in found:
                await self.emit(self._event(breach, "resolved", at))
                await self.redis.srem(self.key, key)
        self._active = found

    @staticmethod
    def _event(breach: Breach, status: Status, at: datetime) -> AlertEvent:
        return AlertEvent(
            source="watcher",
            group_key=breach.group_key,
            status=status,
            title=breach.title or f"watcher-{breach.rule}",
            summary=breach.summary,
            queues=[breach.queue],
            labels={"rule": breach.rule, "queue": breach.queue},
            starts_at=at,
        )
