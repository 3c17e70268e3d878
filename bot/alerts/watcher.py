"""The watcher: built-in alert rules (depth, oldest job, DLQ growth, failed ratio)
evaluated on what each tick already read, adding no Redis polling of its own. A breach
opens an incident through the same path as an Alertmanager alert (the stream); its end
resolves it.

Rules, per queue: depth over WATCH_DEPTH, oldest runnable job older than WATCH_OLDEST,
DLQ growing since the last tick, failed ratio over WATCH_FAILED_PCT among jobs finished
since the last tick (at least 5 failures, so one bad job in three is not a page).

Issue 14 adds three rules that need more than two ticks (`Streaks` keeps when each began):
- no workers with waiting jobs for WATCH_NO_WORKERS (outside cron mode, where no Worker is
  connected between drains by design): the Workers are counted with one CLIENT LIST, read
  only on a tick where some BullMQ queue has jobs waiting, so an idle tick stays the one
  Redis command of the probe (and a Redis refusing CLIENT LIST makes the count unknown:
  the rule then stays quiet rather than guess);
- no completions for WATCH_NO_COMPLETIONS while jobs wait (stuck, not busy): nothing
  completed or failed (the completed and failed sets, BullMQ's metrics counter where
  Workers record it) and the waiting count did not fall (jobs removed on completion leave
  no other trace);
- stalled jobs rising (WATCH_STALLED_RISING): more active jobs without a lock than on the
  last tick; it stays open while the count does not fall.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from bot.alerts.models import AlertEvent, Status
from bot.durations import humanize_age_ms
from bot.queues.bullmq import workers
from bot.queues.keys import QueueRef
from bot.queues.models import ProbeResult, QueueWork

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger(__name__)

MIN_FAILURES = 5
WORKERS_EVERY_MS = 60_000
"""How often the watcher counts Workers at most (CLIENT LIST, O(clients) on Redis): the
no-workers rule is in minutes, and a tick every second must not list every client each time."""
DB_QUEUE_PREFIX = "postgres"
"""The prefix the DB queue's probe rows carry (bot/queues/postgres): it has no Workers."""


@dataclass(frozen=True)
class WatchRules:
    depth: int = 1000
    oldest_ms: int = 15 * 60_000
    failed_pct: float = 10.0
    dlq_growth: bool = True
    no_workers_ms: int = 5 * 60_000
    no_completions_ms: int = 15 * 60_000
    stalled_rising: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> WatchRules:
        """Every rule as configured (WATCH_*)."""
        return cls(
            depth=settings.watch_depth,
            oldest_ms=settings.watch_oldest_ms,
            failed_pct=settings.watch_failed_pct,
            dlq_growth=settings.watch_dlq_growth,
            no_workers_ms=settings.watch_no_workers_ms,
            no_completions_ms=settings.watch_no_completions_ms,
            stalled_rising=settings.watch_stalled_rising,
        )


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


def waiting(q: QueueWork) -> bool:
    """Jobs wait to be taken: the queue is not paused and its wait list or prioritized set
    holds jobs."""
    return not q.is_paused and q.ready > 0


def progressed(now: QueueWork, before: QueueWork) -> bool:
    """Something finished, or was taken, between two ticks (see the module docstring)."""
    metrics = (
        now.metrics_completed is not None
        and before.metrics_completed is not None
        and now.metrics_completed > before.metrics_completed
    )
    return (
        now.completed > before.completed
        or now.failed > before.failed
        or metrics
        or now.ready < before.ready
    )


@dataclass
class Streaks:
    """When each queue's ongoing condition began, for the rules that need it to last: no
    workers while jobs wait, no progress while jobs wait; and the stalled counts firing."""

    no_workers_since: dict[str, int] = field(default_factory=dict)
    stuck_since: dict[str, int] = field(default_factory=dict)
    stalled_firing: set[str] = field(default_factory=set)

    def breaches(
        self,
        rules: WatchRules,
        now: QueueWork,
        before: QueueWork | None,
        at_ms: int,
        *,
        cron_mode: bool = False,
    ) -> list[Breach]:
        q = now.shown
        found: list[Breach] = []
        if rules.no_workers_ms and not cron_mode and waiting(now) and now.workers == 0:
            since = self.no_workers_since.setdefault(q, at_ms)
            if at_ms - since >= rules.no_workers_ms:
                found.append(
                    Breach(
                        "no-workers",
                        q,
                        "NoWorkers",
                        f"{q}: {now.ready} jobs waiting and no worker connected for "
                        f"{humanize_age_ms(at_ms - since)}",
                    )
                )
        else:
            self.no_workers_since.pop(q, None)
        if rules.no_completions_ms and waiting(now):
            if before is None or not waiting(before) or progressed(now, before):
                self.stuck_since[q] = at_ms
            since = self.stuck_since.setdefault(q, at_ms)
            if at_ms - since >= rules.no_completions_ms:
                found.append(
                    Breach(
                        "no-completions",
                        q,
                        "NoCompletions",
                        f"{q}: {now.ready} jobs waiting and none completed for "
                        f"{humanize_age_ms(at_ms - since)} (stuck, not busy)",
                    )
                )
        else:
            self.stuck_since.pop(q, None)
        if rules.stalled_rising and before is not None and now.stalled > 0:
            rising = now.stalled > before.stalled
            holding = q in self.stalled_firing and now.stalled >= before.stalled
            if rising or holding:
                self.stalled_firing.add(q)
                found.append(
                    Breach(
                        "stalled",
                        q,
                        "StalledJobsRising",
                        f"{q}: {now.stalled} active jobs lost their lock (stalled), "
                        f"up from {before.stalled}"
                        if rising
                        else f"{q}: still {now.stalled} stalled jobs",
                    )
                )
            else:
                self.stalled_firing.discard(q)
        else:
            self.stalled_firing.discard(q)
        return found

    def forget(self, seen: set[str]) -> None:
        """Drop the queues the probe no longer lists."""
        for since in (self.no_workers_since, self.stuck_since):
            for gone in set(since) - seen:
                del since[gone]
        self.stalled_firing &= seen


def cron_mode_of(result: ProbeResult) -> bool:
    """Whether the tick found the drain cron on (its extra, lua/probe.lua: {mode, paused,
    every_ms, leader}); False on a tick without it."""
    for extra in result.extras:
        if isinstance(extra, list) and len(extra) == 4 and extra[0] in ("cron", "always-on"):
            return extra[0] == "cron" and str(extra[1]) != "1"
    return False


class Watcher:
    def __init__(
        self,
        rules: WatchRules,
        emit: Callable[[AlertEvent], Awaitable[None]],
        redis: Redis,
        state_prefix: str,
        cron_mode: Callable[[ProbeResult], bool] = cron_mode_of,
    ) -> None:
        self.rules = rules
        self.emit = emit
        self.redis = redis
        self.key = f"{state_prefix}:watcher:active"
        self.cron_mode = cron_mode
        self._before: dict[str, QueueWork] = {}
        self._active: dict[str, Breach] | None = None
        self._streaks = Streaks()
        self._workers_unknown_said = False
        self._workers_at: int | None = None
        self._workers: dict[str, int] | None = None

    async def with_workers(self, result: ProbeResult, cron_mode: bool) -> list[QueueWork]:
        """The tick's queues, with `workers` counted when the no-workers rule could fire:
        outside cron mode, on a tick where some BullMQ queue has jobs waiting. Only then is
        CLIENT LIST sent (one command for every queue): an idle tick stays the probe's one
        command. At most once every WORKERS_EVERY_MS: between, the last counts stand. A Redis
        refusing CLIENT LIST leaves the counts unknown, said once."""
        bullmq = [q for q in result.queues if q.prefix != DB_QUEUE_PREFIX]
        if not self.rules.no_workers_ms or cron_mode or not any(waiting(q) for q in bullmq):
            self._workers_at = None  # the next waiting tick counts afresh
            return list(result.queues)
        refs = {q.shown: QueueRef(q.prefix, q.name) for q in bullmq}
        fresh = self._workers_at is not None and result.at_ms - self._workers_at < WORKERS_EVERY_MS
        stale = self._workers is not None and not set(refs) <= set(self._workers)
        if not fresh or stale:
            found = await workers.workers(self.redis, list(refs.values()))
            self._workers_at = result.at_ms
            if found is None:
                self._workers = None
                if not self._workers_unknown_said:
                    log.warning("watcher: Redis refuses CLIENT LIST; the no-workers rule is off")
                    self._workers_unknown_said = True
            else:
                self._workers = {name: len(found[ref]) for name, ref in refs.items()}
        counts = self._workers
        if counts is None:
            return list(result.queues)
        return [
            q.model_copy(update={"workers": counts[q.shown]}) if q.shown in counts else q
            for q in result.queues
        ]

    async def on_tick(self, result: ProbeResult) -> None:
        if self._active is None:  # once per process: what an earlier run left firing
            keys = [str(m) for m in await self.redis.smembers(self.key)]
            self._active = {
                k: Breach(rule=k.split(":")[1], queue=k.split(":", 2)[2], title="", summary="")
                for k in keys
            }
        cron_mode = self.cron_mode(result)
        queues = await self.with_workers(result, cron_mode)
        found = {
            b.group_key: b
            for q in queues
            for b in [
                *breaches(self.rules, q, self._before.get(q.shown), result.at_ms),
                *self._streaks.breaches(
                    self.rules, q, self._before.get(q.shown), result.at_ms, cron_mode=cron_mode
                ),
            ]
        }
        self._before = {q.shown: q for q in queues}
        self._streaks.forget(set(self._before))
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
