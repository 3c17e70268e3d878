"""QueueService: the one object commands use to read and move jobs, whatever the queue.

It holds one backend per kind of queue (bot/queues/backend.py): BullMQ on Redis always,
and the DB-backed job table in PostgreSQL when QUEUE_JOBS_DATABASE_URL is set. Each
request goes to the backend that owns the queue a person named; a request for every queue
(a snapshot, the tick's probe) asks each backend and puts the answers together, BullMQ's
queues first. Redis-only concerns (the catalogue's cost, queueops' own keys) stay with
the BullMQ backend, reached as `.bullmq`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from bot.errors import QueueOpsError, Refused
from bot.patterns import UserPattern
from bot.queues.backend import Checkpoint, QueueBackend, no_checkpoint
from bot.queues.bullmq.backend import BullmqBackend
from bot.queues.bullmq.catalog import QueueCatalog
from bot.queues.bullmq.probe import TickOptions
from bot.queues.bullmq.quarantine import LIST_SCAN_BOUND
from bot.queues.bullmq.store import QueueStore
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

if TYPE_CHECKING:  # psycopg is imported only where a DB queue is configured
    from bot.queues.postgres.backend import PostgresBackend
    from bot.queues.postgres.schema import DlqSetup

log = logging.getLogger(__name__)


class QueueService:
    def __init__(
        self,
        redis: Redis,
        *,
        prefixes: Sequence[str] | None = None,
        dlq_suffix: str = "-dlq",
        queues: Sequence[str] | None = None,
        rediscover_ms: int = 600_000,
        postgres: PostgresBackend | None = None,
    ) -> None:
        self.bullmq = BullmqBackend(
            redis,
            prefixes=prefixes,
            dlq_suffix=dlq_suffix,
            queues=queues,
            rediscover_ms=rediscover_ms,
        )
        self.postgres = postgres

    async def aclose(self) -> None:
        """Close what this service opened itself (the DB queue's pool; Redis is the
        caller's)."""
        if self.postgres is not None:
            await self.postgres.close()

    @property
    def redis(self) -> Redis:
        return self.bullmq.redis

    @property
    def store(self) -> QueueStore:
        return self.bullmq.store

    @property
    def catalog(self) -> QueueCatalog:
        return self.bullmq.catalog

    def backend_for(self, word: str) -> QueueBackend:
        """The backend owning the queue `word` names: the DB queue's name (or
        `postgres:NAME`) is the Postgres backend's, every other word BullMQ's."""
        if self.postgres is not None and self.postgres.owns(word):
            return self.postgres
        return self.bullmq

    def _backends(self) -> list[QueueBackend]:
        return [self.bullmq] if self.postgres is None else [self.bullmq, self.postgres]

    def _split(self, names: Sequence[str]) -> list[tuple[QueueBackend, list[str]]]:
        """`names` grouped by backend, each group keeping the order the person gave."""
        groups: dict[int, tuple[QueueBackend, list[str]]] = {}
        for word in names:
            backend = self.backend_for(word)
            groups.setdefault(id(backend), (backend, []))[1].append(word)
        return list(groups.values())

    async def init_dlq(self) -> DlqSetup:
        """Create the DB queue's DLQ table (`queueops db init-dlq`); refused without one."""
        if self.postgres is None:
            raise Refused("there is no DB queue: set QUEUE_JOBS_DATABASE_URL")
        return await self.postgres.init_dlq()

    async def queues(self, *, refresh: bool = False) -> list[QueueRef]:
        """Every queue queueops works on: BullMQ's (configured, or discovered), then the
        DB queue."""
        found: list[QueueRef] = []
        for backend in self._backends():
            found += await backend.queues(refresh=refresh)
        return found

    async def queue_names(self, *, refresh: bool = False) -> list[str]:
        """The same queues as replies show them."""
        return [q.shown for q in await self.queues(refresh=refresh)]

    async def require_queue(self, word: str) -> QueueRef:
        """The queue `word` names (short or full name); NotFound naming the known ones, or
        Ambiguous naming the full names a short one could mean."""
        return await self.backend_for(word).require_queue(word)

    def ref(self, word: str) -> QueueRef:
        """The BullMQ queue a word names without asking Redis (BullmqBackend.ref)."""
        return self.bullmq.ref(word)

    def dlq_shown(self, word: str) -> str:
        """Where the quarantined jobs of the queue `word` names are, as replies show it."""
        return self.backend_for(word).dlq_shown(word)

    async def snapshot(
        self,
        names: Sequence[str] | None = None,
        *,
        now_ms: int | None = None,
        unreachable: dict[str, str] | None = None,
    ) -> list[QueueSnapshot]:
        """The queues named, or every queue. For every queue, a DB queue that cannot be read
        is put in `unreachable` (queue: the one-line error) when the caller gives one: a
        PostgreSQL outage must not hide the Redis queues on the night both matter."""
        if not names:
            found: list[QueueSnapshot] = []
            for backend in self._backends():
                try:
                    found += await backend.snapshot(None, now_ms=now_ms)
                except QueueOpsError as err:
                    if backend is self.bullmq or unreachable is None:
                        raise
                    for ref in await backend.queues():
                        unreachable[ref.shown] = str(err)
            return found
        by_name: dict[str, QueueSnapshot] = {}
        order: list[QueueSnapshot] = []
        for backend, words in self._split(names):
            for word, snap in zip(words, await backend.snapshot(words, now_ms=now_ms), strict=True):
                by_name[word] = snap
        order = [by_name[word] for word in names]
        return order

    async def probe(
        self,
        names: Sequence[str] | None = None,
        *,
        now_ms: int | None = None,
        options: TickOptions | None = None,
    ) -> ProbeResult:
        """BullMQ's probe (with the tick's extras: queueops' own keys, read in the same
        call), and the DB queue's one query when there is one."""
        bullmq_names = [n for n in names or () if self.backend_for(n) is self.bullmq]
        wants_pg = self.postgres is not None and (
            not names or any(self.postgres.owns(n) for n in names)
        )
        if names and not bullmq_names:
            result = ProbeResult(queues=[], at_ms=now_ms or 0)
        else:
            result = await self.bullmq.probe(bullmq_names or None, now_ms=now_ms, options=options)
        if wants_pg and self.postgres is not None:
            try:
                pg = await self.postgres.probe(None, now_ms=now_ms)
            except QueueOpsError as err:
                if names:
                    raise
                # The tick goes on with the Redis queues; the next one asks again.
                log.warning("probe: the DB queue was not read: %s", err)
                return result
            result = result.model_copy(update={"queues": [*result.queues, *pg.queues]})
        return result

    async def job(self, queue: str, job_id: str) -> JobDetail:
        return await self.backend_for(queue).job(queue, job_id)

    async def quarantine(
        self,
        queue: str,
        job_id: str,
        *,
        reason: str,
        actor: str,
        deep: bool = False,
        scan_bound: int = LIST_SCAN_BOUND,
    ) -> JobMove:
        """Move one job to the DLQ. A waiting BullMQ job is looked for within `scan_bound`
        entries of each end of its list; deeper, it is refused with the cost unless `deep`."""
        return await self.backend_for(queue).quarantine(
            queue, job_id, reason=reason, actor=actor, deep=deep, scan_bound=scan_bound
        )

    async def preview_failed_matching(
        self, queue: str, pattern: UserPattern, *, limit: int
    ) -> MatchPreview:
        return await self.backend_for(queue).preview_failed_matching(queue, pattern, limit=limit)

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
        return await self.backend_for(queue).quarantine_matching(
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
        return await self.backend_for(queue).dlq_list(queue, limit=limit, oldest_first=oldest_first)

    async def dlq_show(self, queue: str, job_id: str) -> DlqEntry:
        return await self.backend_for(queue).dlq_show(queue, job_id)

    async def dlq_replay(
        self,
        queue: str,
        *,
        count: int,
        batch_size: int | None = None,
        checkpoint: Checkpoint = no_checkpoint,
        reset_attempts: bool = False,
    ) -> ReplayResult:
        return await self.backend_for(queue).dlq_replay(
            queue,
            count=count,
            batch_size=batch_size,
            checkpoint=checkpoint,
            reset_attempts=reset_attempts,
        )

    async def pause(self, queue: str) -> bool:
        return await self.backend_for(queue).pause(queue)

    async def resume(self, queue: str) -> bool:
        return await self.backend_for(queue).resume(queue)

    async def promote_due(self, queue: str) -> int:
        """Delayed jobs of `queue` whose time has come, moved to wait (before a drain)."""
        return await self.backend_for(queue).promote_due(queue)

    async def retry(self, queue: str, *, count: int | None) -> int:
        return await self.backend_for(queue).retry(queue, count=count)

    def bullmq_only(self, word: str, what: str) -> BullmqBackend:
        """The BullMQ backend, for an operation only BullMQ queues have (workers, job logs,
        schedulers...): the DB queue is refused with one line saying so."""
        if self.backend_for(word) is not self.bullmq:
            raise Refused(f"{what} is for BullMQ queues; '{word}' is a DB job table")
        return self.bullmq

    # --- workers and throughput (issue 14) ---

    # --- failures, find and filtered bulk actions (issue 14) ---

    # --- queue actions: promote, clean, empty, obliterate, add, schedulers (issue 14) ---

    # --- job detail and edit-then-replay (issue 14) ---
