"""The tick: one APScheduler job on the bot's event loop, every DRAIN_EVERY.

Each tick sends one Redis command (the probe script, with a depth sample and the counts
of other due work riding along) and hands the result to the hooks the wiring registered:
the watcher, the alert sweep, the archiver, and (next) the drain cron. The scheduler knows
nothing of Slack or alerts (tests/test_layers.py). APScheduler's job store stays in memory:
its Redis job store would query Redis on every wake-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from bot.metrics import TICK_PROBE_FAILURES, QueueGauges
from bot.queues.bullmq.probe import Extra, TickOptions
from bot.queues.models import ProbeResult
from bot.queues.service import QueueService
from bot.redis_client import commands_sent

log = logging.getLogger(__name__)

TickHook = Callable[[ProbeResult], Awaitable[None]]
IDLE_TICK_COST = "$idle_tick_cost"
"""An extra's argument replaced, at each tick, by the Redis commands this process sent for
its last idle tick (counted by bot.redis_client), or "" before the first one."""
IDLE_SAMPLES = 3
"""How many idle ticks' measured costs `idle_tick_cost` is the least of."""
WAKE_COST = "$wake_cost"
"""An extra's argument replaced, at each tick, by what the instant drains' blocking waits
cost over the last cadence (scheduler/instant.py), or "" when none run in this process."""
CHART_WINDOW_MS = 3_600_000


class Ticker:
    def __init__(self, service: QueueService, *, every_ms: int, sample_key_base: str) -> None:
        self.service = service
        self.every_ms = every_ms
        keep = max(12, min(720, CHART_WINDOW_MS // every_ms + 1))
        self.options = TickOptions(keep_samples=keep, sample_key_base=sample_key_base)
        self.hooks: list[TickHook] = []
        self.gauges = QueueGauges()
        self.scheduler: AsyncIOScheduler | None = None
        self.ticks = 0
        self.idle_tick_cost: int | None = None
        """The least of the last IDLE_SAMPLES idle ticks' measured costs: the counter is the
        process's, so another task's command (the alert worker's read) may land inside a
        tick's window; such noise only ever adds."""
        self._idle_costs: deque[int] = deque(maxlen=IDLE_SAMPLES)
        self.wake_cost: Callable[[], str] = lambda: ""
        """What WAKE_COST becomes at a tick: set by the instant drains when they run."""
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def add_extra(self, extra: Extra) -> int:
        """Count something more in the tick's command; returns its index in `extras`."""
        self.options = replace(self.options, extras=(*self.options.extras, extra))
        return len(self.options.extras) - 1

    def replace_extra(self, index: int, extra: Extra) -> None:
        """Change what an extra sends from the next tick on (a new lease TTL after
        `cron every`)."""
        extras = list(self.options.extras)
        extras[index] = extra
        self.options = replace(self.options, extras=tuple(extras))

    def add_hook(self, hook: TickHook) -> None:
        self.hooks.append(hook)

    async def tick(self) -> ProbeResult | None:
        self._running += 1
        self._idle.clear()
        try:
            return await self._tick()
        finally:
            self._running -= 1
            if not self._running:
                self._idle.set()

    async def discover(self) -> None:
        """The slow cadence of discovery (QUEUEOPS_DISCOVER_EVERY): new queues join the
        tick without a restart. Its cost is the catalogue's `last_cost`, not the tick's."""
        try:
            await self.service.queues(refresh=True)
        except Exception as err:  # Redis down: the last list stands, the next look retries
            log.warning("discovery failed: %s", err)

    async def _tick(self) -> ProbeResult | None:
        try:
            await self.service.queues()  # the first discovery, outside the tick's own cost
        except Exception as err:
            log.warning("tick: could not list the queues: %s", err)
            TICK_PROBE_FAILURES.inc()
            return None
        before = commands_sent()
        values = {
            IDLE_TICK_COST: "" if self.idle_tick_cost is None else str(self.idle_tick_cost),
            WAKE_COST: self.wake_cost(),
        }
        options = replace(
            self.options,
            extras=tuple(
                replace(e, args=tuple(values.get(a, a) for a in e.args))
                for e in self.options.extras
            ),
        )
        try:
            result = await self.service.probe(options=options)
        except Exception as err:  # Redis down: say so, try again next tick
            log.warning("tick: probe failed: %s", err)
            TICK_PROBE_FAILURES.inc()
            return None
        self.ticks += 1
        self.gauges.export(result)  # /metrics: what the probe read, no command of its own
        for hook in self.hooks:
            try:
                await hook(result)
            except Exception as err:
                log.warning("tick: %s failed: %s", getattr(hook, "__qualname__", hook), err)
        if not result.runnable:
            self._idle_costs.append(commands_sent() - before)
            self.idle_tick_cost = min(self._idle_costs)
        return result

    def start(self, *, first_now: bool = False) -> None:
        """Tick every `every_ms`; `first_now`: the first tick at once rather than one
        cadence after start (instant drains begin with the first tick that finds this
        replica leading, which must not wait out a 5-minute cadence after each deploy)."""
        self.scheduler = AsyncIOScheduler(
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": max(1, self.every_ms // 2000),
            }
        )
        self.scheduler.add_job(
            self.tick,
            IntervalTrigger(seconds=self.every_ms / 1000),
            id="tick",
            replace_existing=True,
            **({"next_run_time": datetime.now(UTC)} if first_now else {}),
        )
        catalog = self.service.catalog
        if catalog.needs_discovery:
            self.scheduler.add_job(
                self.discover,
                IntervalTrigger(seconds=catalog.rediscover_ms / 1000),
                id="discover",
                replace_existing=True,
            )
        self.scheduler.start()

    def reschedule(self, every_ms: int) -> None:
        """A new cadence (`cron every 15m`, maybe from another host): the next tick learns it
        from Redis and moves the job."""
        self.every_ms = every_ms
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.reschedule_job("tick", trigger=IntervalTrigger(seconds=every_ms / 1000))
            log.info("tick: every %d s now", every_ms // 1000)

    def stop(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def stop_and_wait(self, grace_s: float) -> bool:
        """Stop scheduling ticks and wait (at most `grace_s`) for the one in progress, whose
        drain may still be running; True when none runs any more."""
        self.stop()
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        except TimeoutError:
            return False
        return True
