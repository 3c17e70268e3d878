"""The drain cron (seeds 000 and 001), riding on the tick.

Each tick's one Redis command already says whether this replica leads (the lease) and
which queues have work. No work: nothing more, no HTTP call, no further Redis command
(the idle tick was recorded inside that command). Work: drain just those queues through
the app's endpoint, record the run in the history, count failures in a row, and after
FAILURES_BEFORE_ALERT say so loudly (an alert when the alerts path is wired).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from bot.drain import DrainClient, DrainError, DrainResponse
from bot.queues.models import ProbeResult
from bot.queues.probe import Extra
from scheduler.state import CronState, DrainRun
from scheduler.ticker import IDLE_TICK_COST, Ticker

log = logging.getLogger(__name__)

FAILURES_BEFORE_ALERT = 3
DRAIN_MAX_MS = 60_000

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
    ) -> None:
        self.ticker = ticker
        self.state = state
        self.drain = drain
        self.owner = owner
        self.all_queues = list(all_queues) if all_queues else None
        self.on_streak = on_streak
        self.max_duration_ms = max_duration_ms
        # The lease outlives a drain in progress (the app stops after maxDurationMs).
        ttl = max(2 * ticker.every_ms, max_duration_ms + 30_000)
        self.index = ticker.add_extra(
            Extra(
                "cron",
                state.key,
                (state.lease_key, owner, str(ttl), state.default_mode, IDLE_TICK_COST),
            )
        )
        ticker.add_hook(self.on_tick)

    async def on_tick(self, result: ProbeResult) -> None:
        _mode, _paused, every, leader = result.extras[self.index]  # type: ignore[misc]
        if every and int(every) != self.ticker.every_ms:
            self.ticker.reschedule(int(every))
        if not int(leader):
            return
        runnable = result.runnable
        if not runnable:
            return
        await self.run(runnable, at_ms=result.at_ms)

    async def run(self, queues: Sequence[str], *, at_ms: int) -> DrainRun:
        started = time.monotonic()
        calls: list[str | None]
        if self.all_queues is not None and set(queues) == set(self.all_queues):
            calls = [None]  # every queue: one call, the app drains them all
        else:
            calls = list(queues)
        processed = failed = 0
        status: int | None = 200
        error = None
        for queue in calls:
            try:
                body: DrainResponse = await self.drain.drain(
                    queue, max_duration_ms=self.max_duration_ms
                )
                processed += body.total_processed
                failed += body.total_failed
            except DrainError as err:
                status, error = err.status, str(err)
                break
        run = DrainRun(
            at_ms=at_ms,
            queues=list(queues),
            status=status,
            processed=processed,
            failed=failed,
            duration_ms=int((time.monotonic() - started) * 1000),
            error=error,
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
