"""QueueService: the one object commands use to read and move BullMQ jobs.

It owns which queues exist (configured, or discovered once and cached) and turns the
adapter's results into errors a person can act on. Every method is async and safe to
crash in the middle of (see the modules it delegates to).
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from bot.errors import NotFound
from bot.patterns import UserPattern
from bot.queues import control, dlq, probe, quarantine, snapshot
from bot.queues.discovery import discover_queues
from bot.queues.models import (
    BulkQuarantineResult,
    DlqEntry,
    DlqListing,
    JobMove,
    ProbeResult,
    QueueSnapshot,
    ReplayResult,
)
from bot.queues.probe import TickOptions
from bot.queues.quarantine import MatchPreview
from bot.queues.store import Checkpoint, QueueStore, no_checkpoint


class QueueService:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "bull",
        dlq_suffix: str = "-dlq",
        queues: Sequence[str] | None = None,
    ) -> None:
        self.store = QueueStore(redis, prefix=prefix, dlq_suffix=dlq_suffix)
        self._configured = list(queues) if queues else None
        self._discovered: list[str] | None = None

    @property
    def redis(self) -> Redis:
        return self.store.redis

    async def queue_names(self, *, refresh: bool = False) -> list[str]:
        """The configured queues, or those SCAN found (once per process unless refreshed)."""
        if self._configured is not None:
            return list(self._configured)
        if self._discovered is None or refresh:
            self._discovered = await discover_queues(self.store)
        return list(self._discovered)

    async def require_queue(self, name: str) -> str:
        """The name, if it is a known queue; else NotFound naming the known ones."""
        known = await self.queue_names()
        if name not in known and self._configured is None:
            known = await self.queue_names(refresh=True)  # it may be newer than our cache
        if name in known:
            return name
        listing = ", ".join(known[:20]) or "none"
        source = "QUEUEOPS_QUEUES" if self._configured is not None else "discovered"
        raise NotFound(f"unknown queue '{name}' ({source}: {listing})")

    async def _resolve(self, names: Sequence[str] | None) -> list[str]:
        if names:
            return [await self.require_queue(n) for n in names]
        return await self.queue_names()

    async def snapshot(
        self, names: Sequence[str] | None = None, *, now_ms: int | None = None
    ) -> list[QueueSnapshot]:
        return await snapshot.snapshot(self.store, await self._resolve(names), now_ms=now_ms)

    async def probe(
        self,
        names: Sequence[str] | None = None,
        *,
        now_ms: int | None = None,
        options: TickOptions | None = None,
    ) -> ProbeResult:
        return await probe.probe(
            self.store, await self._resolve(names), now_ms=now_ms, options=options
        )

    async def quarantine(
        self,
        queue: str,
        job_id: str,
        *,
        reason: str,
        actor: str,
        deep: bool = False,
        scan_bound: int = quarantine.LIST_SCAN_BOUND,
    ) -> JobMove:
        """Move one job to the DLQ. A waiting job is looked for within `scan_bound` entries
        of each end of its list; deeper, it is refused with the cost unless `deep`."""
        await self.require_queue(queue)
        return await quarantine.quarantine_job(
            self.store, queue, job_id, reason=reason, actor=actor, deep=deep, scan_bound=scan_bound
        )

    async def find_failed_matching(
        self, queue: str, pattern: UserPattern, *, limit: int
    ) -> tuple[list[tuple[str, str]], int]:
        await self.require_queue(queue)
        return await quarantine.find_matching(self.store, queue, pattern, limit=limit)

    async def preview_failed_matching(
        self, queue: str, pattern: UserPattern, *, limit: int
    ) -> MatchPreview:
        await self.require_queue(queue)
        return await quarantine.preview_matching(self.store, queue, pattern, limit=limit)

    async def quarantine_matching(
        self,
        queue: str,
        pattern: UserPattern,
        *,
        limit: int,
        reason: str,
        actor: str,
        batch_size: int | None = None,
        checkpoint: Checkpoint = no_checkpoint,
    ) -> BulkQuarantineResult:
        await self.require_queue(queue)
        return await quarantine.quarantine_matching(
            self.store,
            queue,
            pattern,
            limit=limit,
            reason=reason,
            actor=actor,
            batch_size=batch_size,
            checkpoint=checkpoint,
        )

    async def dlq_list(
        self, queue: str, *, limit: int = 20, oldest_first: bool = False
    ) -> DlqListing:
        await self.require_queue(queue)
        return await dlq.dlq_list(self.store, queue, limit=limit, oldest_first=oldest_first)

    async def dlq_show(self, queue: str, job_id: str) -> DlqEntry:
        await self.require_queue(queue)
        entry = await dlq.dlq_show(self.store, queue, job_id)
        if entry is None:
            raise NotFound(f"job {job_id} is not in '{self.store.dlq_name(queue)}'")
        return entry

    async def dlq_replay(
        self,
        queue: str,
        *,
        count: int,
        batch_size: int | None = None,
        checkpoint: Checkpoint = no_checkpoint,
    ) -> ReplayResult:
        await self.require_queue(queue)
        return await dlq.dlq_replay(
            self.store, queue, count=count, batch_size=batch_size, checkpoint=checkpoint
        )

    async def pause(self, queue: str) -> bool:
        return await control.pause(self.store, await self.require_queue(queue))

    async def resume(self, queue: str) -> bool:
        return await control.resume(self.store, await self.require_queue(queue))

    async def promote_due(self, queue: str) -> int:
        """Delayed jobs of `queue` whose time has come, moved to wait (before a drain)."""
        return await control.promote_due(self.store, queue)

    async def retry(self, queue: str, *, count: int | None) -> int:
        return await control.retry_failed(self.store, await self.require_queue(queue), count=count)
