"""Instant drains: in cron mode, block on every queue's BullMQ marker instead of waiting for
the next tick.

Every BullMQ 5 queue has a `marker` sorted set that a producer touches when it adds a job:
`ZADD <queue>:marker 0 "0"` for a job ready now (addBaseMarkerIfNeeded), and
`ZADD <queue>:marker <due ms> "1"` for a delayed one (addDelayMarkerIfNeeded: the earliest
delayed job's time). npm Workers block on it with BZPOPMIN. In cron mode no Worker runs, so
the leading `queueops serve` blocks on all queues' markers at once, one command, with the
tick's cadence as its timeout (DRAIN_WAKE_MAX bounds it): an idle cadence costs one blocking
command beside the tick's probe, and a new job wakes the bot at once.

What taking a marker means for the drain endpoint's Workers that start afterwards (npm
bullmq 5.81.5, classes/worker.js): a Worker starts with `drained = false`, so its first
`_getNextJob` calls `moveToActive` directly; only a Worker that found the queue empty
(`drained`) blocks on the marker (`waitForJob`). `moveToActive` promotes the delayed jobs
that are due and takes the next waiting job without looking at the marker: markers only
wake Workers already asleep. So a marker the bot took costs those Workers nothing, for a
waiting job and for a delayed one whose time has come (tests/test_instant_drain.py checks
both against npm Workers). In always-on mode it would be otherwise: the Workers sleep on
those markers, and a marker taken from under them leaves them asleep until their own
timeout, so this never runs there (nor while the cron is paused, nor on a replica that does
not hold the leader lease).

On a wake-up: a marker due now marks its queue for a drain after a short debounce
(DRAIN_WAKE_DEBOUNCE: a burst of 1,000 adds is one drain, not 1,000), through the cron's
lease and history (DrainCron.drain_now: two replicas never both drain); a marker in the
future (a delayed job) schedules that drain for its due time; a timeout just blocks again
(the tick, on its own schedule, probes, watches and records). Before calling the endpoint,
one probe of the woken queues confirms they hold runnable work: a marker does not always
mean a job (npm's moveToActive re-adds the marker for every job it starts, so the drain's
own Workers leave one behind, and a drain would otherwise be followed by an empty one).

The blocking connection is its own client (not the pool commands share: a command would
wait behind a 5-minute BZPOPMIN), with no retry of its own and a socket timeout above the
block. A dropped connection (hosted services close long-blocking ones) is reopened with
exponential backoff, logged once per outage, never a storm.

On Redis Cluster a BZPOPMIN's keys must share one slot, so the watch is one blocking command
per slot holding markers (a `{bull}` prefix: still one; hash-tagged queue names: one per
queue), each its own task on the one wake client (a cluster client: a connection per
blocking command, from the pool of the node holding that slot). An idle cadence then costs
one block per slot group, and `cost_text` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.queues.bullmq.slots import is_cluster_client, slot_of
from bot.queues.keys import QueueRef
from bot.queues.models import ProbeResult
from bot.urls import hide_url_credentials
from scheduler.cron import DrainCron
from scheduler.state import wake_block_ms, wake_blocks_per_cadence
from scheduler.ticker import Ticker

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 60.0
SOCKET_MARGIN_S = 10.0
"""How much longer than a block the socket may stay silent before redis-py gives up on it."""
STOP_WAIT_S = 5.0
"""How long stop() waits for the watch to end once its connection is closed."""
DUE_SLACK_MS = 20
"""A delayed marker this close to now is due now."""

WakeClient = Callable[[float], Redis]
"""Opens the blocking connection's client, given the socket timeout (seconds) it needs."""


class InstantDrain:
    """The marker watch of the leading replica in cron mode (see the module's docstring)."""

    def __init__(
        self,
        cron: DrainCron,
        ticker: Ticker,
        open_client: WakeClient,
        *,
        runnable: Callable[[list[str]], Awaitable[list[str]]],
        debounce_ms: int,
        wake_max_ms: int | None,
    ) -> None:
        self.cron = cron
        self.ticker = ticker
        self.open_client = open_client
        self.runnable = runnable
        """Which of these queues hold work a drain would do now (one probe command)."""
        self.debounce_s = debounce_ms / 1000
        self.wake_max_ms = wake_max_ms
        self.markers: dict[str, str] = {}
        """The queues the last tick probed, as shown, and their marker keys."""
        self.blocks = 0
        """Blocking commands sent so far, all groups together (the cost `budget` and
        `cron status` show)."""
        self.groups = 1
        """Blocking watches at once: 1, or on Redis Cluster one per slot holding markers."""
        self._markers_changed = asyncio.Event()
        self.wakes = 0
        """Markers that asked for a drain (due now, or at their time)."""
        self.drains = 0
        self.empty_wakes = 0
        """Wake-ups whose queues held no runnable work (a marker left by a drain)."""
        self._task: asyncio.Task[None] | None = None
        self._client: Redis | None = None
        self._client_timeout_s = 0.0
        self._pending: set[str] = set()
        self._flush: asyncio.Task[None] | None = None
        self._timers: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        self._counted_blocks = 0
        self._counted_wakes = 0
        self._idle_cost: int | None = None
        self._stopping = False
        ticker.add_hook(self.on_tick)  # after the cron's hook: it reads what that one learnt
        ticker.wake_cost = self.cost_text

    @property
    def block_ms(self) -> int:
        """One block's timeout: the cadence, or DRAIN_WAKE_MAX when that is shorter."""
        return wake_block_ms(self.ticker.every_ms, self.wake_max_ms)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def cost_text(self) -> str:
        """For the tick's record: blocking commands sent over the cadence that just ended
        ("" when not watching). A cadence with wake-ups was not idle (each wake-up blocks
        again): it reports the last idle cadence's figure, or what one should cost."""
        blocks, self._counted_blocks = self.blocks - self._counted_blocks, self.blocks
        wakes, self._counted_wakes = self.wakes - self._counted_wakes, self.wakes
        if not self.running:
            return ""
        if not wakes and blocks:
            self._idle_cost = blocks
        expected = wake_blocks_per_cadence(self.ticker.every_ms, self.wake_max_ms) * self.groups
        return str(self._idle_cost if self._idle_cost is not None else expected)

    async def on_tick(self, result: ProbeResult) -> None:
        """Follow the tick: the queues it probed, and whether this replica should watch
        (cron mode, not paused, holding the lease)."""
        self.markers = {q.shown: QueueRef(q.prefix, q.name).key("marker") for q in result.queues}
        self._markers_changed.set()
        should = self.cron.on and self.cron.leading
        if should and not self.running:
            log.info(
                "instant drains: watching %d queue markers (each wait at most %d s)",
                len(self.markers),
                self.block_ms // 1000,
            )
            self._task = asyncio.create_task(self._watch(), name="queueops-instant-drain")
        elif not should and self.running:
            log.info("instant drains: stopped (%s)", "not leading" if self.cron.on else "cron off")
            await self.stop()

    async def stop(self) -> None:
        """Stop watching: the block, the scheduled drains and the debounce (a drain already
        running finishes under the cron's lock)."""
        # redis-py swallows a cancel that lands in a command and runs it to its end (a
        # block of minutes): the watch is told to stop, its connection closed (which ends
        # the block at once), and only then cancelled.
        self._stopping = True
        await self._close_client()
        for task in (self._task, self._flush):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                    await asyncio.wait_for(task, STOP_WAIT_S)
        self._task = self._flush = None
        self._stopping = False
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._pending.clear()
        await self._close_client()

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    async def _client_for(self, block_s: float) -> Redis:
        """The blocking client; reopened when a longer block needs a longer socket timeout."""
        if self._client is None or self._client_timeout_s < block_s + SOCKET_MARGIN_S:
            await self._close_client()
            self._client_timeout_s = block_s + SOCKET_MARGIN_S
            self._client = self.open_client(self._client_timeout_s)
        return self._client

    async def _watch(self) -> None:
        """One watch of every marker; on a cluster wake client, one per slot (started as
        ticks bring queues in new slots; one whose slot lost its queues ends)."""
        if not is_cluster_client(await self._client_for(self.block_ms / 1000)):
            self.groups = 1
            await self._watch_group(None)
            return
        watches: dict[int, asyncio.Task[None]] = {}
        try:
            while not self._stopping:
                self._markers_changed.clear()
                for slot in {slot_of(key) for key in self.markers.values()}:
                    if slot not in watches or watches[slot].done():
                        watches[slot] = asyncio.create_task(
                            self._watch_group(slot), name=f"queueops-instant-drain-{slot}"
                        )
                watches = {slot: task for slot, task in watches.items() if not task.done()}
                self.groups = max(len(watches), 1)
                await self._markers_changed.wait()
        finally:
            for task in watches.values():
                task.cancel()
            if watches:  # their connection is closed first (stop): they end at once
                await asyncio.wait(watches.values(), timeout=STOP_WAIT_S)

    async def _watch_group(self, slot: int | None) -> None:
        """Block on the markers (of `slot` only, on a cluster) until stopped, or on a
        cluster until no queue of the last tick is in `slot` any more."""
        backoff = BACKOFF_MIN_S
        failing = False
        while not self._stopping:
            by_key = {
                key: q for q, key in self.markers.items() if slot is None or slot_of(key) == slot
            }
            block_s = self.block_ms / 1000
            if not by_key:
                if slot is not None:
                    return
                await asyncio.sleep(block_s)
                continue
            client = await self._client_for(block_s)
            try:
                if failing:  # say it is back as soon as it is, not a whole block later
                    await client.ping()
                    log.info("instant drains: the blocking connection is back")
                    failing = False
                self.blocks += 1
                popped = await client.bzpopmin(list(by_key), timeout=block_s)
            except (RedisError, OSError) as err:
                if self._stopping:
                    return
                if not failing:
                    log.warning(
                        "instant drains: the blocking connection failed (%s); reopening it "
                        "with backoff (up to %d s), the tick drains meanwhile",
                        hide_url_credentials(str(err)),
                        BACKOFF_MAX_S,
                    )
                    failing = True
                if self._client is client:  # not one another group's failure reopened
                    await self._close_client()
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            backoff = BACKOFF_MIN_S
            if popped is None:
                continue  # the timeout: the tick probes on its own schedule
            key, _member, score = popped
            queue = by_key.get(str(key))
            if queue is None:
                continue
            due_ms = float(score)
            now_ms = time.time() * 1000
            if due_ms <= now_ms + DUE_SLACK_MS:
                self._wake(queue)
            else:
                self._wake_at(queue, due_ms, now_ms)

    def _wake_at(self, queue: str, due_ms: float, now_ms: float) -> None:
        """A delayed job's marker: drain the queue when it is due (the earliest one wins)."""
        known = self._timers.get(queue)
        if known is not None and known[0] <= due_ms:
            return
        if known is not None:
            known[1].cancel()

        def fire() -> None:
            self._timers.pop(queue, None)
            self._wake(queue)

        delay_s = (due_ms - now_ms) / 1000
        self._timers[queue] = (due_ms, asyncio.get_running_loop().call_later(delay_s, fire))

    def _wake(self, queue: str) -> None:
        self.wakes += 1
        self._pending.add(queue)
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._drain_soon(), name="queueops-instant-flush")

    async def _drain_soon(self) -> None:
        """After the debounce, drain the queues woken meanwhile; again while more wake up
        during a drain (a burst outlasting one drain)."""
        while self._pending:
            await asyncio.sleep(self.debounce_s)
            woken = sorted(self._pending)
            self._pending.clear()
            try:
                queues = await self.runnable(woken)
                if not queues:
                    self.empty_wakes += 1
                    continue
                run = await self.cron.drain_now(queues)
            except Exception as err:  # Redis blip: the tick sees the work and drains it
                log.warning("instant drains: could not drain %s: %s", ", ".join(woken), err)
                continue
            if run is None:
                log.info("instant drains: another replica leads now; it drains")
                return
            self.drains += 1
