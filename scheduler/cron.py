"""The drain cron, riding on the tick: the app's drain endpoint called when queues have work.

Each tick's one Redis command already says whether this replica leads (the lease) and
which queues have work. No work: nothing more, no HTTP call, no further Redis command
(the idle tick was recorded inside that command). Work: drain just those queues through
the app's endpoint, record the run in the history, count failures in a row, and after
FAILURES_BEFORE_ALERT say so loudly (an alert when the alerts path is wired).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from bot.drain import DrainClient, DrainError, DrainResponse
from bot.durations import stored_cadence_ms
from bot.metrics import DRAIN_CALL_SECONDS, DRAIN_TICKS, DRAINS
from bot.queues.bullmq.probe import Extra
from bot.queues.models import ProbeResult
from scheduler.state import CronState, DrainRun
from scheduler.ticker import IDLE_TICK_COST, WAKE_COST, Ticker

log = logging.getLogger(__name__)

FAILURES_BEFORE_ALERT = 3
DRAIN_MAX_MS = 60_000
LEASE_MARGIN_MIN_MS = 2_000
LEASE_MARGIN_MAX_MS = 60_000
HEARTBEAT_MAX_MS = 10_000


def _app_name(queue: str | None) -> str | None:
    """The app's name for a queue shown by its full name (`intelliflow:events` when two
    prefixes hold `events`): the drain endpoint knows its queues by their BullMQ names."""
    return queue.rpartition(":")[2] if queue is not None else None


def lease_ttl_ms(every_ms: int) -> int:
    """How long the leader's lease lives after each tick renews it: one cadence plus half of
    one (at least 2 s for jitter, at most a minute). A crashed leader so costs about one
    tick, and a live one keeps leading between its ticks. A drain longer than this keeps the
    lease by heartbeat (`DrainCron.run`), so two replicas never drain at once."""
    return every_ms + min(max(every_ms // 2, LEASE_MARGIN_MIN_MS), LEASE_MARGIN_MAX_MS)


FailureReport = Callable[[int, str | None], Awaitable[None]]
"""Called with the failure streak after each drain: >= FAILURES_BEFORE_ALERT raises an
alert, 0 (a success) clears it."""


class DrainCron:
    def __init__(
        self,
        ticker: Ticker,
        state: CronState,
        drain: DrainClient,
        *,
        owner: str,
        all_queues: Sequence[str] | None = None,
        on_streak: FailureReport | None = None,
        max_duration_ms: int = DRAIN_MAX_MS,
        promote_due: Callable[[str], Awaitable[int]] | None = None,
    ) -> None:
        self.ticker = ticker
        self.state = state
        self.drain = drain
        self.owner = owner
        self.all_queues = list(all_queues) if all_queues else None
        self.on_streak = on_streak
        self.max_duration_ms = max_duration_ms
        self.promote_due = promote_due
        """Before a queue is drained, its due delayed jobs are moved to wait: an endpoint
        that checks for waiting work starts no Worker (whose moveToActive would promote
        them) for a queue whose only work is due delayed jobs (lua/promote_due.lua)."""
        self.lease_ttl_ms = lease_ttl_ms(ticker.every_ms)
        self._drain_lock = asyncio.Lock()
        self.on = False
        """The last tick found the mode cron and the cron not paused."""
        self.leading = False
        """The last tick found this replica holding the leader lease."""
        self.index = ticker.add_extra(self._extra())
        ticker.add_hook(self.on_tick)

    def _extra(self) -> Extra:
        """The tick's lease part: take or renew the lease for `lease_ttl_ms`."""
        args = (self.state.lease_key, self.owner, str(self.lease_ttl_ms))
        return Extra(
            "cron", self.state.key, (*args, self.state.default_mode, IDLE_TICK_COST, WAKE_COST)
        )

    async def on_tick(self, result: ProbeResult) -> None:
        mode, paused, every, leader = result.extras[self.index]  # type: ignore[misc]
        stored = stored_cadence_ms(every) if every else None
        if stored is not None and stored != self.ticker.every_ms:
            self.ticker.reschedule(stored)
            self.lease_ttl_ms = lease_ttl_ms(stored)
            self.ticker.replace_extra(self.index, self._extra())
        self.on = mode == "cron" and str(paused) != "1"
        self.leading = bool(int(leader))
        if not self.leading:
            DRAIN_TICKS.labels("not-leader" if self.on else "off").inc()
            return
        runnable = result.runnable
        if not runnable:
            DRAIN_TICKS.labels("idle").inc()
            return
        if self._drain_lock.locked():
            return  # this replica's previous drain is still running: counted when it ends
        async with self._drain_lock:
            run = await self.run(runnable, at_ms=result.at_ms)
        DRAIN_TICKS.labels("failed" if run.error else "drained").inc()

    async def drain_now(self, queues: Sequence[str]) -> DrainRun | None:
        """A drain outside the tick (an instant drain woken by a queue's marker), under the
        same lease and history: only while this replica leads (checked now, one command),
        after any drain of ours still running. None when another replica leads."""
        async with self._drain_lock:
            if not await self.state.renew_lease(self.owner, self.lease_ttl_ms):
                self.leading = False
                return None
            return await self.run(queues, at_ms=int(time.time() * 1000), trigger="wake")

    async def run(self, queues: Sequence[str], *, at_ms: int, trigger: str = "tick") -> DrainRun:
        started = time.monotonic()
        calls: list[str | None]
        if self.all_queues is not None and set(queues) == set(self.all_queues):
            calls = [None]  # every queue: one call, the app drains them all
        else:
            calls = list(queues)
        processed = failed = 0
        status: int | None = 200
        error = None
        async with self._holding_lease():
            if self.promote_due is not None:
                for name in queues:
                    try:
                        await self.promote_due(name)
                    except Exception as err:  # the drain may still find waiting work
                        log.warning("cron: could not promote %s's due delayed jobs: %s", name, err)
            for queue in calls:
                called, outcome = time.monotonic(), "failed"
                try:
                    body: DrainResponse = await self.drain.drain(
                        _app_name(queue), max_duration_ms=self.max_duration_ms
                    )
                    processed += body.total_processed
                    failed += body.total_failed
                    outcome = "ok"
                except DrainError as err:
                    status, error = err.status, str(err)
                    break
                finally:
                    DRAIN_CALL_SECONDS.observe(time.monotonic() - called)
                    for name in queues if queue is None else [queue]:
                        DRAINS.labels(name, outcome).inc()
        run = DrainRun(
            at_ms=at_ms,
            queues=list(queues),
            status=status,
            processed=processed,
            failed=failed,
            duration_ms=int((time.monotonic() - started) * 1000),
            error=error,
            trigger=trigger,
        )
        streak = await self.state.record(run, self.owner)
        if streak < 0:
            log.warning("cron: lost the leader lease during a drain; not recorded")
            return run
        if error:
            level = logging.ERROR if streak >= FAILURES_BEFORE_ALERT else logging.WARNING
            log.log(level, "cron: drain failed (%d in a row): %s", streak, error)
        if self.on_streak is not None:
            await self.on_streak(streak, error)
        return run

    @contextlib.asynccontextmanager
    async def _holding_lease(self) -> AsyncIterator[None]:
        """Renew the lease every third of its life while the drain runs (a drain may last
        `max_duration_ms`, longer than the lease), so no other replica starts one meanwhile."""
        every_s = min(self.lease_ttl_ms // 3, HEARTBEAT_MAX_MS) / 1000

        async def beat() -> None:
            while True:
                await asyncio.sleep(every_s)
                try:
                    if not await self.state.renew_lease(self.owner, self.lease_ttl_ms):
                        log.warning("cron: lost the leader lease while draining")
                        return
                except Exception as err:  # Redis blip: try again at the next beat
                    log.warning("cron: could not renew the leader lease: %s", err)

        task = asyncio.create_task(beat(), name="queueops-cron-lease")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def release(self) -> bool:
        """A clean stop: give the lease up so another replica drains from its next tick,
        instead of waiting out the lease. Call after the last tick has finished."""
        try:
            return await self.state.release_lease(self.owner)
        except Exception as err:  # Redis down: the lease simply expires
            log.warning("cron: could not release the leader lease: %s", err)
            return False
