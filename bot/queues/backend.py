"""QueueBackend: what a kind of queue must answer for the commands to work on it.

queueops reaches two kinds of queue: BullMQ on Redis (bot/queues/bullmq/) and a DB-backed
job table in PostgreSQL (bot/queues/postgres/). Commands never talk to either directly:
they call QueueService (bot/queues/service.py), which hands each request to the backend
that owns the queue a person named. Both return the same records (bot/queues/models.py),
so every transport renders a Postgres queue exactly as a BullMQ one.

A backend takes a person's word for a queue (a short or a full name) and resolves it
itself: only it knows what its names look like. An operation a backend cannot do is
refused with one line saying why (bot.errors.Refused), never faked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from bot.patterns import UserPattern
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

Checkpoint = Callable[[str], Awaitable[None]]
"""Called between the steps of a bulk change with the step's name; the fault-injection
tests kill the process there to prove each step is safe to crash after."""


async def no_checkpoint(step: str) -> None:
    return None


class QueueBackend(Protocol):
    """One kind of queue. Every change is one atomic step per batch, safe to crash in."""

    kind: str
    """What `--json` calls it: "bullmq" or "postgres"."""

    def owns(self, word: str) -> bool:
        """`word` names one of this backend's queues, without asking the server."""

    async def close(self) -> None:
        """Release what the backend opened itself (a pool); the caller's clients stay."""

    async def queues(self, *, refresh: bool = False) -> list[QueueRef]: ...

    async def require_queue(self, word: str) -> QueueRef: ...

    def dlq_shown(self, word: str) -> str:
        """Where the quarantined jobs of the queue `word` names are, as replies show it."""

    async def snapshot(
        self, names: Sequence[str] | None = None, *, now_ms: int | None = None
    ) -> list[QueueSnapshot]: ...

    async def probe(
        self, names: Sequence[str] | None = None, *, now_ms: int | None = None
    ) -> ProbeResult:
        """What each queue holds that a drain would work on: the tick's one read of it."""

    async def job(self, queue: str, job_id: str) -> JobDetail:
        """One job as it is now: its state, data, attempts and latest failure."""

    async def quarantine(
        self,
        queue: str,
        job_id: str,
        *,
        reason: str,
        actor: str,
        deep: bool = False,
        scan_bound: int = ...,
    ) -> JobMove: ...

    async def preview_failed_matching(
        self, queue: str, pattern: UserPattern, *, limit: int
    ) -> MatchPreview: ...

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
    ) -> BulkQuarantineResult: ...

    async def dlq_list(
        self, queue: str, *, limit: int = 20, oldest_first: bool = False
    ) -> DlqListing: ...

    async def dlq_show(self, queue: str, job_id: str) -> DlqEntry: ...

    async def dlq_replay(
        self,
        queue: str,
        *,
        count: int,
        batch_size: int | None = None,
        checkpoint: Checkpoint = no_checkpoint,
        reset_attempts: bool = False,
    ) -> ReplayResult: ...

    async def pause(self, queue: str) -> bool: ...

    async def resume(self, queue: str) -> bool: ...

    async def promote_due(self, queue: str) -> int: ...

    async def retry(self, queue: str, *, count: int | None) -> int: ...
