"""BullmqBackend: the queue backend of BullMQ queues on Redis (bot/queues/backend.py).

It owns which BullMQ queues exist (the catalogue: configured, or discovered) and what a
person's word for one means (a short or a full name: `QueueRef`), and turns the adapter's
results into errors a person can act on. Every method is async and safe to crash in the
middle of (see the modules it delegates to). Commands reach it through QueueService
(bot/queues/service.py), which also routes to the Postgres backend.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from bot.errors import NotFound
from bot.patterns import UserPattern
from bot.queues.bullmq import control, dlq, jobs, probe, quarantine, snapshot
from bot.queues.bullmq.catalog import QueueCatalog
from bot.queues.bullmq.probe import TickOptions
from bot.queues.bullmq.slots import is_cluster_client, require_one_slot
from bot.queues.bullmq.store import Checkpoint, QueueStore, no_checkpoint
from bot.queues.keys import QueueRef
from bot.queues.models import (
    BulkQuarantineResult,
    DlqEntry,
    DlqListing,
    JobDetail,
    JobMove,
    MatchPreview,
    ProbeResult,
    QueueSnapshot,
    ReplayResult,
)


class BullmqBackend:
    kind = "bullmq"

    def __init__(
        self,
        redis: Redis,
        *,
        prefixes: Sequence[str] | None = None,
        dlq_suffix: str = "-dlq",
        queues: Sequence[str] | None = None,
        rediscover_ms: int = 600_000,
        sample_key_base: str = "",
    ) -> None:
        self.store = QueueStore(redis, dlq_suffix=dlq_suffix)
        self.sample_key_base = sample_key_base
        """Where the tick keeps depth samples (bot/queues/samples.py): a snapshot derives a
        rate from them where Workers record no metrics; "" reads none."""
        self.catalog = QueueCatalog(
            redis,
            prefixes=prefixes,
            entries=queues,
            dlq_suffix=dlq_suffix,
            rediscover_ms=rediscover_ms,
        )

    @property
    def redis(self) -> Redis:
        return self.store.redis

    async def queues(self, *, refresh: bool = False) -> list[QueueRef]:
        """The BullMQ queues queueops works on (configured, or discovered: catalog.py)."""
        return await self.catalog.queues(refresh=refresh)

    async def queue_names(self, *, refresh: bool = False) -> list[str]:
        """The same queues as replies show them."""
        return [q.shown for q in await self.queues(refresh=refresh)]

    async def require_queue(self, word: str) -> QueueRef:
        """The queue `word` names (short or full name); NotFound naming the known ones, or
        Ambiguous naming the full names a short one could mean."""
        return self._checked(await self.catalog.resolve(word))

    def _checked(self, ref: QueueRef) -> QueueRef:
        """On Redis Cluster, `ref` only when its keys share one slot (slots.require_one_slot)."""
        return require_one_slot(ref) if is_cluster_client(self.store.redis) else ref

    async def close(self) -> None:
        """Nothing: the Redis client is the caller's."""

    def owns(self, word: str) -> bool:
        """Every word the Postgres backend does not own names a BullMQ queue (or none)."""
        return True

    async def job(self, queue: str, job_id: str) -> JobDetail:
        return await jobs.job_detail(self.store, await self.require_queue(queue), job_id)

    def ref(self, word: str) -> QueueRef:
        """The queue a word names without asking Redis: a full name as it is, a short name
        under the first prefix in scope (where queueops' own demo and tests put queues)."""
        return QueueRef.parse(word) if ":" in word else QueueRef(self.catalog.scope[0], word)

    def dlq_shown(self, word: str) -> str:
        """The DLQ of the queue a person named, as they named it plus the suffix."""
        return f"{word}{self.store.dlq_suffix}"

    async def _resolve(self, names: Sequence[str] | None) -> list[QueueRef]:
        if names:
            return [await self.require_queue(n) for n in names]
        return [self._checked(q) for q in await self.queues()]

    async def snapshot(
        self, names: Sequence[str] | None = None, *, now_ms: int | None = None
    ) -> list[QueueSnapshot]:
        return await snapshot.snapshot(
            self.store,
            await self._resolve(names),
            now_ms=now_ms,
            sample_key_base=self.sample_key_base,
        )

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
        return await quarantine.quarantine_job(
            self.store,
            await self.require_queue(queue),
            job_id,
            reason=reason,
            actor=actor,
            deep=deep,
            scan_bound=scan_bound,
        )

    async def find_failed_matching(
        self, queue: str, pattern: UserPattern, *, limit: int
    ) -> tuple[list[tuple[str, str]], int]:
        return await quarantine.find_matching(
            self.store, await self.require_queue(queue), pattern, limit=limit
        )

    async def preview_failed_matching(
        self, queue: str, pattern: UserPattern, *, limit: int
    ) -> MatchPreview:
        return await quarantine.preview_matching(
            self.store, await self.require_queue(queue), pattern, limit=limit
        )

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
        return await quarantine.quarantine_matching(
            self.store,
            await self.require_queue(queue),
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
        return await dlq.dlq_list(
            self.store, await self.require_queue(queue), limit=limit, oldest_first=oldest_first
        )

    async def dlq_show(self, queue: str, job_id: str) -> DlqEntry:
        entry = await dlq.dlq_show(self.store, await self.require_queue(queue), job_id)
        if entry is None:
            raise NotFound(f"job {job_id} is not in '{self.dlq_shown(queue)}'")
        return entry

    async def dlq_replay(
        self,
        queue: str,
        *,
        count: int,
        batch_size: int | None = None,
        checkpoint: Checkpoint = no_checkpoint,
        reset_attempts: bool = False,
    ) -> ReplayResult:
        """`reset_attempts` changes nothing here: a replayed BullMQ job is added afresh,
        with no attempts made."""
        return await dlq.dlq_replay(
            self.store,
            await self.require_queue(queue),
            count=count,
            batch_size=batch_size,
            checkpoint=checkpoint,
        )

    async def pause(self, queue: str) -> bool:
        return await control.pause(self.store, await self.require_queue(queue))

    async def resume(self, queue: str) -> bool:
        return await control.resume(self.store, await self.require_queue(queue))

    async def promote_due(self, queue: str) -> int:
        """Delayed jobs of `queue` whose time has come, moved to wait (before a drain)."""
        return await control.promote_due(self.store, await self.require_queue(queue))

    async def retry(self, queue: str, *, count: int | None) -> int:
        return await control.retry_failed(self.store, await self.require_queue(queue), count=count)
