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

Issue 15 keeps the incident channels readable (`Watcher.on_tick`): one open incident per
rule and queue (the group `watcher:<rule>:<queue>`, one incident per group); a cooldown
(WATCH_COOLDOWN) before a resolved rule may open again on that queue; flapping (WATCH_FLAP,
N opens in M minutes) keeps one incident open with a count instead of N channels; a snooze
from the incident's button; thresholds per queue (WATCH_OVERRIDES). What must survive a
restart and be shared by replicas is in Redis under `<state>:watcher:*` (when a group last
resolved, its recent opens, its snooze), every key with a TTL; the times compared are the
tick's, the values stored, so a test can play minutes in a second. Redis is read only on a
tick where something changes (a breach appears or ends): an idle tick adds no command.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from bot.alerts.models import AlertEvent, Status
from bot.durations import humanize_age_ms, parse_duration_ms
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
SNOOZE_MS = 60 * 60_000
"""How long the incident's `Snooze 1h` button keeps the watcher quiet about a rule."""
OPENS_KEPT = 100
"""The most opens remembered per group: the flap count needs the window's, and a rule
with no cooldown must not grow a sorted set without end."""
GLOB_CHARS = frozenset("*?[")

OVERRIDE_FIELDS = {
    "depth": "depth",
    "oldest": "oldest_ms",
    "failed_pct": "failed_pct",
    "dlq": "dlq_growth",
    "no_workers": "no_workers_ms",
    "no_completions": "no_completions_ms",
    "stalled": "stalled_rising",
}
"""The names WATCH_OVERRIDES takes (the variables' without `WATCH_`) and WatchRules'."""


def _override_value(name: str, text: str) -> int | float | bool:
    """One threshold of WATCH_OVERRIDES, checked as its WATCH_ variable is; ValueError
    with what is wrong."""
    text = text.strip()
    if name == "depth":
        if not text.isdigit():
            raise ValueError(f"depth={text[:40]!r} is not a whole number of jobs")
        return int(text)
    if name == "failed_pct":
        try:
            pct = float(text)
        except ValueError:
            raise ValueError(f"failed_pct={text[:40]!r} is not a percentage") from None
        if not 0 <= pct <= 100:
            raise ValueError(f"failed_pct={text[:40]} is outside 0 to 100")
        return pct
    if name in ("dlq", "stalled"):
        word = text.lower()
        if word not in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            raise ValueError(f"{name}={text[:40]!r} is not yes or no")
        return word in ("true", "yes", "on", "1")
    return 0 if text == "0" else parse_duration_ms(text)


@dataclass(frozen=True)
class QueueOverride:
    """`billing-*:depth=5000,oldest=30m`: thresholds for the queues a glob matches, matched
    as QUEUEOPS_QUEUES matches them (bot/queues/bullmq/catalog.py): a word without `:`
    against the queue's name, `prefix:name` part by part."""

    pattern: str
    values: tuple[tuple[str, int | float | bool], ...]

    def matches(self, prefix: str, name: str) -> bool:
        if ":" in self.pattern:
            want_prefix, _, want_name = self.pattern.rpartition(":")
            return fnmatch.fnmatchcase(prefix, want_prefix) and fnmatch.fnmatchcase(name, want_name)
        if any(c in GLOB_CHARS for c in self.pattern):
            return fnmatch.fnmatchcase(name, self.pattern)
        return name == self.pattern


def parse_overrides(text: str | None) -> tuple[QueueOverride, ...]:
    """WATCH_OVERRIDES: `glob:name=value,...;glob:...`; ValueError saying which part is
    wrong (config.py turns it into one line naming the variable)."""
    found: list[QueueOverride] = []
    for part in (text or "").split(";"):
        part = part.strip()
        if not part:
            continue
        # A full-name glob (`bull:billing-*`) has a ':' of its own: the thresholds start
        # after the last ':' before the first '='.
        head = part.split("=", 1)[0]
        pattern, sep, _ = head.rpartition(":")
        settings = part[len(pattern) + 1 :]
        if not sep or not pattern.strip() or "=" not in part:
            raise ValueError(f"{part[:60]!r} is not QUEUE:name=value (e.g. billing-*:depth=5000)")
        values: list[tuple[str, int | float | bool]] = []
        for pair in settings.split(","):
            name, eq, value = pair.partition("=")
            name = name.strip()
            if not eq or name not in OVERRIDE_FIELDS:
                raise ValueError(
                    f"{pair.strip()[:40]!r} in {pattern.strip()[:40]!r}: use "
                    + ", ".join(f"{n}=" for n in OVERRIDE_FIELDS)
                )
            values.append((OVERRIDE_FIELDS[name], _override_value(name, value)))
        found.append(QueueOverride(pattern.strip(), tuple(values)))
    return tuple(found)


def parse_flap(text: str) -> tuple[int, int]:
    """WATCH_FLAP, `N/M` ("3/30m"): N opens within M are flapping; "0" turns it off."""
    text = text.strip()
    if text == "0":
        return 0, 0
    count, slash, window = text.partition("/")
    if not slash or not count.strip().isdigit() or int(count) < 2:
        raise ValueError(f"{text[:40]!r} is not N/M with N at least 2 (e.g. 3/30m), or 0")
    ms = parse_duration_ms(window)
    if ms <= 0:
        raise ValueError(f"{text[:40]!r}: the window must be longer than 0")
    return int(count), ms


def window_words(ms: int) -> str:
    """The flap window as the summary says it: "30 minutes", "2 hours", "90 seconds"."""
    for size, unit in ((3_600_000, "hour"), (60_000, "minute"), (1000, "second")):
        if ms >= size and ms % size == 0:
            n = ms // size
            return f"{n} {unit}" + ("s" if n != 1 else "")
    return f"{ms} ms"


def snooze_key(state_prefix: str, group_key: str) -> str:
    """Where a group's snooze is kept (the incident's `Snooze 1h` button writes it)."""
    return f"{state_prefix}:watcher:snooze:{group_key}"


async def snooze(redis: Redis, state_prefix: str, group_key: str, until_ms: int) -> None:
    """Keep the watcher quiet about one rule on one queue until `until_ms`: the value is
    the time (the tick compares it with its own), the TTL bounds the key."""
    await redis.set(snooze_key(state_prefix, group_key), until_ms, px=SNOOZE_MS + 60_000)


@dataclass(frozen=True)
class WatchRules:
    depth: int = 1000
    oldest_ms: int = 15 * 60_000
    failed_pct: float = 10.0
    dlq_growth: bool = True
    no_workers_ms: int = 5 * 60_000
    no_completions_ms: int = 15 * 60_000
    stalled_rising: bool = True
    cooldown_ms: int = 10 * 60_000
    flap_opens: int = 3
    flap_window_ms: int = 30 * 60_000
    overrides: tuple[QueueOverride, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> WatchRules:
        """Every rule as configured (WATCH_*)."""
        opens, window = parse_flap(settings.watch_flap)
        return cls(
            depth=settings.watch_depth,
            oldest_ms=settings.watch_oldest_ms,
            failed_pct=settings.watch_failed_pct,
            dlq_growth=settings.watch_dlq_growth,
            no_workers_ms=settings.watch_no_workers_ms,
            no_completions_ms=settings.watch_no_completions_ms,
            stalled_rising=settings.watch_stalled_rising,
            cooldown_ms=settings.watch_cooldown_ms,
            flap_opens=opens,
            flap_window_ms=window,
            overrides=parse_overrides(settings.watch_overrides),
        )

    def for_queue(self, prefix: str, name: str) -> WatchRules:
        """The thresholds for one queue: every override whose glob matches it, in the
        order configured (a later one wins)."""
        changes = {
            field_name: value
            for o in self.overrides
            if o.matches(prefix, name)
            for field_name, value in o.values
        }
        return replace(self, **changes) if changes else self  # type: ignore[arg-type]

    @property
    def flapping_on(self) -> bool:
        return self.flap_opens >= 2 and self.flap_window_ms > 0


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
        self.state_prefix = state_prefix
        self.key = f"{state_prefix}:watcher:active"
        self.cron_mode = cron_mode
        self._before: dict[str, QueueWork] = {}
        self._active: dict[str, Breach] | None = None
        self._streaks = Streaks()
        self._workers_unknown_said = False
        self._workers_at: int | None = None
        self._workers: dict[str, int] | None = None
        self._rules_of: dict[tuple[str, str], WatchRules] = {}
        self._clear_since: dict[str, int] = {}
        """Flapping groups whose breach ended: their resolve waits for a quiet window."""
        self._held_until: dict[str, int] = {}
        """Groups known to be in their cooldown or snoozed until then (no Redis till then)."""

    def rules_for(self, q: QueueWork) -> WatchRules:
        """The queue's thresholds (WATCH_OVERRIDES), worked out once per queue."""
        found = self._rules_of.get((q.prefix, q.name))
        if found is None:
            found = self._rules_of[(q.prefix, q.name)] = self.rules.for_queue(q.prefix, q.name)
        return found

    async def with_workers(self, result: ProbeResult, cron_mode: bool) -> list[QueueWork]:
        """The tick's queues, with `workers` counted when the no-workers rule could fire:
        outside cron mode, on a tick where some BullMQ queue has jobs waiting. Only then is
        CLIENT LIST sent (one command for every queue): an idle tick stays the probe's one
        command. At most once every WORKERS_EVERY_MS: between, the last counts stand. A Redis
        refusing CLIENT LIST leaves the counts unknown, said once."""
        bullmq = [q for q in result.queues if q.prefix != DB_QUEUE_PREFIX]
        if cron_mode or not any(waiting(q) and self.rules_for(q).no_workers_ms for q in bullmq):
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
        """Emit what changed since the last tick: a breach that opens (unless its group is
        in its cooldown or snoozed: then it waits), a flapping group breaching again (its
        open incident's count, no new one), a breach that ended (a flapping group's resolve
        waits until it stayed clear for the flap window)."""
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
            for rules in [self.rules_for(q)]
            for b in [
                *breaches(rules, q, self._before.get(q.shown), result.at_ms),
                *self._streaks.breaches(
                    rules, q, self._before.get(q.shown), result.at_ms, cron_mode=cron_mode
                ),
            ]
        }
        self._before = {q.shown: q for q in queues}
        self._streaks.forget(set(self._before))
        at_ms = result.at_ms
        at = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
        active = self._active
        for key, breach in found.items():
            if key in active and key not in self._clear_since:
                continue  # firing, said already
            if await self._held(key, at_ms):
                continue  # cooldown or snooze: asked again on a later tick
            count = await self._opened(key, at_ms)
            if self.rules.flapping_on and count >= self.rules.flap_opens:
                breach = replace(
                    breach,
                    summary=f"{breach.summary} · flapping: {count} times in "
                    f"{window_words(self.rules.flap_window_ms)}",
                )
            event = self._event(breach, "firing", at)
            if key in active:  # flapping, back before its resolve went out: the same incident
                # (whose summary the new notification updates: Incidents.handle)
                del self._clear_since[key]
            await self.emit(event)
            await self.redis.sadd(self.key, key)
            active[key] = breach
        for key, breach in list(active.items()):
            if key in found:
                continue
            since = self._clear_since.get(key)
            if since is None and await self._flapping(key, at_ms):
                self._clear_since[key] = at_ms  # keep the one incident open for now
                continue
            if since is not None and at_ms - since < self.rules.flap_window_ms:
                continue
            if await self._held(key, at_ms, cooldown=False):
                continue  # snoozed: resolved when the snooze ends, if still clear
            await self.emit(self._event(breach, "resolved", at))
            await self._resolved(key, at_ms)
            self._clear_since.pop(key, None)
            del active[key]

    async def _held(self, key: str, at_ms: int, *, cooldown: bool = True) -> bool:
        """Whether the group may not emit now: snoozed, or (`cooldown`) resolved less than
        WATCH_COOLDOWN ago. One round trip, only on a tick where the group changes; a hold
        found is remembered until it ends."""
        if self._held_until.get(key, 0) > at_ms and cooldown:
            return True
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(snooze_key(self.state_prefix, key))
            pipe.get(self._cooldown_key(key))
            snoozed, resolved = await pipe.execute()
        until = int(snoozed) if snoozed else 0
        if cooldown and resolved and self.rules.cooldown_ms:
            until = max(until, int(resolved) + self.rules.cooldown_ms)
        if until > at_ms:
            self._held_until[key] = until
            return True
        self._held_until.pop(key, None)
        return False

    def _cooldown_key(self, key: str) -> str:
        return f"{self.state_prefix}:watcher:resolved:{key}"

    def _opens_key(self, key: str) -> str:
        return f"{self.state_prefix}:watcher:opens:{key}"

    async def _opened(self, key: str, at_ms: int) -> int:
        """Record an open of the group; how many it had within the flap window (this one
        included). Bounded (OPENS_KEPT) and expiring with the window."""
        if not self.rules.flapping_on:
            return 1
        opens = self._opens_key(key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(opens, {str(at_ms): at_ms})
            pipe.zremrangebyscore(opens, "-inf", at_ms - self.rules.flap_window_ms)
            pipe.zremrangebyrank(opens, 0, -OPENS_KEPT - 1)
            pipe.zcard(opens)
            pipe.pexpire(opens, self.rules.flap_window_ms)
            replies = await pipe.execute()
        return int(replies[3])

    async def _flapping(self, key: str, at_ms: int) -> bool:
        """Whether the group opened WATCH_FLAP's N times within its window."""
        if not self.rules.flapping_on:
            return False
        count = await self.redis.zcount(
            self._opens_key(key), at_ms - self.rules.flap_window_ms, "+inf"
        )
        return int(count) >= self.rules.flap_opens

    async def _resolved(self, key: str, at_ms: int) -> None:
        """The group resolved: out of the active set, and its cooldown begins (the time,
        kept as long as the cooldown lasts)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.srem(self.key, key)
            if self.rules.cooldown_ms:
                pipe.set(self._cooldown_key(key), at_ms, px=self.rules.cooldown_ms)
            await pipe.execute()
        if self.rules.cooldown_ms:
            self._held_until[key] = at_ms + self.rules.cooldown_ms

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
