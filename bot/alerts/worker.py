"""The in-process worker that turns stream entries into incident channels.

It waits on an asyncio.Event that intake sets after each append: no Redis traffic while
idle. A failed entry stays pending in the stream; `sweep` (run at start and on the
scheduler's tick) retries entries left pending for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bot.alerts.incidents import Busy, Incidents
from bot.alerts.models import AlertEvent
from bot.alerts.stream import AlertStream

log = logging.getLogger(__name__)

SWEEP_MIN_IDLE_MS = 30_000


class AlertWorker:
    def __init__(self, stream: AlertStream, incidents: Incidents) -> None:
        self.stream = stream
        self.incidents = incidents
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

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
            except Exception as err:  # Redis down: the entries wait in the stream
                log.warning("alerts: could not read the stream: %s", err)

    async def drain_new(self) -> None:
        while batch := await self.stream.take_new():
            for entry_id, event in batch:
                await self._handle(entry_id, event)

    async def sweep(self, min_idle_ms: int = SWEEP_MIN_IDLE_MS) -> int:
        """Retry entries a failed or crashed attempt left pending."""
        batch = await self.stream.take_stale(min_idle_ms)
        for entry_id, event in batch:
            await self._handle(entry_id, event)
        return len(batch)

    async def _handle(self, entry_id: str, event: AlertEvent) -> None:
        try:
            await self.incidents.handle(event)
        except Busy:
            log.info("alerts: %s is being opened by another worker; will retry", event.title)
            return
        except Exception as err:
            log.warning(
                "alerts: %s (%s) not handled yet, left pending for a retry: %s",
                event.title,
                entry_id,
                err,
            )
            return
        await self.stream.ack(entry_id)

    async def stop(self, grace_s: float = 20.0) -> None:
        """Let the entry in hand finish (each is safe to stop, but finishing posts sooner),
        then stop; cancel only if it takes longer than `grace_s`."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        done, _ = await asyncio.wait({self._task}, timeout=grace_s)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
