"""The in-process worker that turns stream entries into incident channels.

It waits on an asyncio.Event that intake sets after each append: no Redis traffic while
idle. A failed entry stays pending in the stream; `sweep` (run at start and on the
scheduler's tick) retries entries left pending for a while, walking the pending list
with a cursor so a pile of failing entries cannot keep the rest from their turn.

Failures are of two kinds. An outage (Slack 5xx or 429, a network or Redis error) or an
incident being opened by someone else (`Busy`) is retried for as long as it takes: a 200
means the alert is kept until it is handled. Anything else (an entry that cannot be read,
Slack refusing the request itself) is counted, and after MAX_FAILURES the entry is parked
in the dead-letter stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from redis.exceptions import RedisError
from slack_sdk.errors import SlackApiError

from bot.alerts.stream import AlertStream, StoredAlert
from bot.incidents.channels import Busy, Incidents

log = logging.getLogger(__name__)

SWEEP_MIN_IDLE_MS = 30_000
SWEEP_MAX_ENTRIES = 1_000
"""At most this many entries per sweep (the next sweep goes on from there)."""
MAX_FAILURES = 5
SLACK_OUTAGE_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable"}


def is_outage(err: BaseException) -> bool:
    """True for a failure that says nothing about the entry itself: retry it, never park it."""
    if isinstance(err, (RedisError, OSError, aiohttp.ClientError)):
        return True
    if isinstance(err, SlackApiError):
        status = getattr(err.response, "status_code", 200)
        return status >= 500 or status == 429 or err.response.get("error") in SLACK_OUTAGE_ERRORS
    return False


class AlertWorker:
    def __init__(self, stream: AlertStream, incidents: Incidents) -> None:
        self.stream = stream
        self.incidents = incidents
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._ready: list[StoredAlert] = []
        self._timers: dict[str, asyncio.TimerHandle] = {}
        """Entries left pending because their incident was locked, tried again by this
        process when the lock expires (a timer, not polling)."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="queueops-alert-worker")
        self._wake.set()  # read anything that arrived while no worker ran

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.drain_new()
                while self._ready and not self._stopping:
                    await self._handle(self._ready.pop(0))
            except Exception as err:  # Redis down: the entries wait in the stream
                log.warning("alerts: could not read the stream: %s", err)

    async def drain_new(self) -> None:
        while batch := await self.stream.take_new():
            for stored in batch:
                await self._handle(stored)

    async def sweep(self, min_idle_ms: int = SWEEP_MIN_IDLE_MS) -> int:
        """Retry entries a failed or crashed attempt left pending: from where the last
        sweep stopped to the end of the pending list, at most SWEEP_MAX_ENTRIES."""
        seen = 0
        while seen < SWEEP_MAX_ENTRIES:
            batch, at_end = await self.stream.take_stale(min_idle_ms)
            for stored in batch:
                await self._handle(stored)
            seen += len(batch)
            if at_end:
                break
        return seen

    async def _handle(self, stored: StoredAlert) -> None:
        if stored.event is None:
            log.error(
                "alerts: entry %s cannot be read (%s): parked", stored.entry_id, stored.problem
            )
            await self.stream.park(stored, f"cannot be read: {stored.problem}", 0)
            return
        event = stored.event
        try:
            await self.incidents.handle(event)
        except Busy as busy:
            log.info("alerts: %s is being opened by another worker; will retry", event.title)
            self._retry_later(stored, busy.retry_after_ms)
            return
        except Exception as err:
            if is_outage(err):
                log.warning(
                    "alerts: %s (%s) not handled yet, left pending for a retry: %s",
                    event.title,
                    stored.entry_id,
                    err,
                )
                return
            failures = await self.stream.count_failure(stored.entry_id)
            if failures >= MAX_FAILURES:
                log.error(
                    "alerts: %s (%s) failed %d times, parked in %s: %s",
                    event.title,
                    stored.entry_id,
                    failures,
                    self.stream.dead_key,
                    err,
                )
                await self.stream.park(stored, f"{type(err).__name__}: {err}", failures)
            else:
                log.warning(
                    "alerts: %s (%s) failed (%d of %d before it is parked): %s",
                    event.title,
                    stored.entry_id,
                    failures,
                    MAX_FAILURES,
                    err,
                )
            return
        await self.stream.ack(stored.entry_id)

    def _retry_later(self, stored: StoredAlert, delay_ms: int) -> None:
        """The lock's holder may have died mid-way (SIGKILL, a crash): the entry stays
        pending and is tried again by this process once the lock has expired."""
        if self._stopping or stored.entry_id in self._timers:
            return

        def due() -> None:
            self._timers.pop(stored.entry_id, None)
            self._ready.append(stored)
            self._wake.set()

        loop = asyncio.get_running_loop()
        self._timers[stored.entry_id] = loop.call_later(delay_ms / 1000, due)

    async def stop(self, grace_s: float = 20.0) -> None:
        """Let the entry in hand finish (each is safe to stop, but finishing posts sooner),
        then stop; cancel only if it takes longer than `grace_s`. Entries waiting for a
        lock stay pending in the stream for the next process."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        done, _ = await asyncio.wait({self._task}, timeout=grace_s)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
