"""QueueService: the one object commands use to read and move jobs, whatever the queue.

It holds one backend per kind of queue (bot/queues/backend.py): BullMQ on Redis always,
and the DB-backed job table in PostgreSQL when QUEUE_JOBS_DATABASE_URL is set. Each
request goes to the backend that owns the queue a person named; a request for every queue
(a snapshot, the tick's probe) asks each backend and puts the answers together, BullMQ's
queues first. Redis-only concerns (the catalogue's cost, queueops' own keys) stay with
the BullMQ backend, reached as `.bullmq`.

Read-only queues (QUEUEOPS_READONLY, Bull Board's readOnlyMode): every method that changes
a queue calls `await self.guard_change(word)` first, which refuses a queue the policy names
with one line, whoever asks. A new changing method must call it too; reads do not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from bot.errors import QueueOpsError, Refused
from bot.patterns import UserPattern
from bot.queues.backend import Checkpoint, QueueBackend, no_checkpoint
from bot.queues.bullmq import dlq as bullmq_dlq
from bot.queues.bullmq import filtered as bullmq_filtered
from bot.queues.bullmq import queue_actions
from bot.queues.bullmq import search as bullmq_search
from bot.queues.bullmq import throughput as bullmq_throughput
from bot.queues.bullmq import workers as bullmq_workers
from bot.queues.bullmq.backend import BullmqBackend
from bot.queues.bullmq.catalog import QueueCatalog
from bot.queues.bullmq.probe import TickOptions
from bot.queues.bullmq.quarantine import LIST_SCAN_BOUND
from bot.queues.bullmq.store import QueueStore
from bot.queues.keys import QueueRef
from bot.queues.models import (
    AddedJob,
    BulkQuarantineResult,
    CleanResult,
    DataChange,
    DataEdit,
    DlqEntry,
    DlqListing,
    EmptyResult,
    FailureReport,
    FilteredActionResult,
    FindResult,
    JobDetail,
    JobFilter,
    JobMove,
    MatchPreview,
    ObliterateResult,
    ProbeResult,
    QueueRecord,
    QueueSnapshot,
    QueueWorkers,
    ReplayResult,
    SchedulerListing,
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
        readonly: Sequence[str] | None = None,
        sample_key_base: str = "",
    ) -> None:
        self.readonly = queue_actions.ReadOnlyPolicy(readonly or ())
        """QUEUEOPS_READONLY: the queues no change may touch (`guard_change`)."""
        self.bullmq = BullmqBackend(
            redis,
            prefixes=prefixes,
            dlq_suffix=dlq_suffix,
            queues=queues,
            rediscover_ms=rediscover_ms,
            sample_key_base=sample_key_base,
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

    async def guard_change(self, word: str) -> None:
        """Refuse any change to a queue QUEUEOPS_READONLY names, for every role, with one
        line naming the policy. Every changing method calls it first; with no policy it
        costs nothing (no lookup)."""
        if not self.readonly:
            return
        ref = await self.require_queue(word)
        entry = self.readonly.match(ref)
        if entry is not None:
            raise Refused(
                f"'{ref.shown}' is read-only (QUEUEOPS_READONLY: {entry}); queueops changes "
                "nothing in it"
            )

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
        await self.guard_change(queue)
        return await self.backend_for(queue).quarantine(
            queue, job_id, reason=reason, actor=actor, deep=deep, scan_bound=scan_bound
        )

    async def preview_failed_matching(
        self, queue: str, pattern: UserPattern, *, limit: int
    ) -> MatchPreview:
        await self.guard_change(queue)  # the preview of a change: refused before asking
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
        await self.guard_change(queue)
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
        await self.guard_change(queue)
        return await self.backend_for(queue).dlq_replay(
            queue,
            count=count,
            batch_size=batch_size,
            checkpoint=checkpoint,
            reset_attempts=reset_attempts,
        )

    async def pause(self, queue: str) -> bool:
        await self.guard_change(queue)
        return await self.backend_for(queue).pause(queue)

    async def resume(self, queue: str) -> bool:
        await self.guard_change(queue)
        return await self.backend_for(queue).resume(queue)

    async def promote_due(self, queue: str) -> int:
        """Delayed jobs of `queue` whose time has come, moved to wait (before a drain). Not
        guarded by `guard_change`: it is the drain's own step, what a Worker would do, not
        a person's change."""
        return await self.backend_for(queue).promote_due(queue)

    async def retry(self, queue: str, *, count: int | None) -> int:
        await self.guard_change(queue)
        return await self.backend_for(queue).retry(queue, count=count)

    def bullmq_only(self, word: str, what: str) -> BullmqBackend:
        """The BullMQ backend, for an operation only BullMQ queues have (workers, job logs,
        schedulers...): the DB queue is refused with one line saying so."""
        if self.backend_for(word) is not self.bullmq:
            raise Refused(f"{what} is for BullMQ queues; '{word}' is a DB job table")
        return self.bullmq

    # --- workers and throughput (issue 14) ---

    async def workers(self, word: str | None = None) -> list[QueueWorkers]:
        """The npm bullmq Workers connected for the queue `word` names, or for every BullMQ
        queue, from one CLIENT LIST (bot/queues/bullmq/workers.py; one per node on a
        cluster). Each queue's `workers` is None when Redis refuses CLIENT LIST."""
        if word is None:
            refs = await self.bullmq.queues()
        else:
            self.bullmq_only(word, "workers")
            refs = [await self.bullmq.require_queue(word)]
        found = await bullmq_workers.workers(self.redis, refs)
        return [
            QueueWorkers(
                name=q.name,
                prefix=q.prefix,
                label=q.shown,
                workers=None if found is None else found[q],
            )
            for q in refs
        ]

    def with_sampled_rate(
        self, snap: QueueSnapshot, points: Sequence[tuple[int, int]], now_ms: int
    ) -> QueueSnapshot:
        """`snap` with a throughput derived from its depth samples ((ms, depth), oldest
        first) when no Worker records BullMQ metrics for it (bot/queues/bullmq/throughput.py)."""
        if snap.throughput is not None:
            return snap
        rate = bullmq_throughput.from_samples(points, now_ms)
        if rate is None:
            return snap
        waiting = snap.counts["waiting"] + snap.counts["prioritized"]
        return snap.model_copy(
            update={
                "throughput": rate,
                "time_to_empty_ms": bullmq_throughput.time_to_empty_ms(waiting, rate),
            }
        )

    async def minute_rates(
        self, queue: QueueRecord, *, minutes: int = 60
    ) -> dict[str, list[tuple[int, int]]]:
        """A BullMQ queue's jobs completed and failed per minute over the last `minutes`,
        from the metrics keys its Workers record (bot/queues/bullmq/throughput.py; {} when
        they record none, or for the DB queue), keyed by " completed/min", " failed/min"."""
        if self.backend_for(queue.full) is not self.bullmq:
            return {}
        now = int(time.time() * 1000)
        return await bullmq_throughput.minute_series(self.redis, queue.full, now, minutes=minutes)

    # --- failures, find and filtered bulk actions (issue 14) ---

    async def find(self, queue: str, flt: JobFilter) -> FindResult:
        """The jobs `flt` selects, newest first, in a bounded scan (bullmq/search.py)."""
        self.bullmq_only(queue, "find")
        ref = await self.bullmq.require_queue(queue)
        return await bullmq_search.find(self.bullmq.store, ref, flt)

    async def failures(self, queue: str, *, scan: int) -> FailureReport:
        """The newest `scan` failed jobs grouped by normalised reason (failure_clusters)."""
        self.bullmq_only(queue, "failures")
        ref = await self.bullmq.require_queue(queue)
        report, _ = await bullmq_search.failures(self.bullmq.store, ref, scan=scan)
        return report

    async def filtered_action(
        self,
        queue: str,
        action: str,
        flt: JobFilter,
        *,
        actor: str,
        reason: str | None = None,
        dry_run: bool = False,
    ) -> FilteredActionResult:
        """`action` (retry, quarantine, remove, purge, promote) on the jobs `flt` selects;
        with `dry_run`, only what it would act on. Each job moves by the existing path for
        one job (bullmq/filtered.py), so a job that changed since the scan is refused."""
        self.bullmq_only(queue, f"{action} with filters")
        await self.guard_change(queue)  # QUEUEOPS_READONLY, dry runs too
        ref = await self.bullmq.require_queue(queue)
        store = self.bullmq.store
        jobs, stats, _ = await bullmq_search.select(store, ref, flt)
        dlq = self.bullmq.dlq_shown(queue) if action in ("quarantine", "remove") else None
        result = FilteredActionResult(
            name=ref.name,
            prefix=ref.prefix,
            label=ref.shown,
            action=action,
            dry_run=dry_run,
            selected=[j.found() for j in jobs],
            scan=stats,
            dlq=dlq,
        )
        if dry_run or not jobs:
            return result
        if action in ("quarantine", "remove"):
            why = reason or ("removed" if action == "remove" else "matched a filter")
            outcome = await bullmq_filtered.quarantine_jobs(
                store, ref, jobs, reason=why, actor=actor, action=action
            )
        elif action == "retry":
            outcome = await bullmq_filtered.retry_jobs(store, ref, jobs)
        elif action == "promote":
            outcome = await bullmq_filtered.promote_jobs(store, ref, jobs)
        elif action == "purge":
            outcome = await bullmq_filtered.purge_jobs(store, ref, jobs)
        else:
            raise ValueError(f"unknown action {action}")
        return result.model_copy(update={"done": outcome.done, "skipped": outcome.skipped})

    async def promote(self, queue: str, job_id: str | None) -> int:
        """`promote QUEUE ID` (one delayed job) or `promote QUEUE --all` (None): how many
        went to waiting."""
        self.bullmq_only(queue, "promote")
        await self.guard_change(queue)
        ref = await self.bullmq.require_queue(queue)
        if job_id is None:
            return await bullmq_filtered.promote_all(self.bullmq.store, ref)
        await bullmq_filtered.promote_one(self.bullmq.store, ref, job_id)
        return 1

    async def retry_count(self, queue: str) -> int:
        """How many failed jobs `retry QUEUE` would move now (what retry_failed counts)."""
        import time

        self.bullmq_only(queue, "retry --dry-run")
        ref = await self.bullmq.require_queue(queue)
        now = int(time.time() * 1000)
        return int(await self.redis.zcount(ref.key("failed"), "-inf", now))

    async def delayed_count(self, queue: str) -> int:
        """How many delayed jobs `promote --all` would move (one ZCARD)."""
        self.bullmq_only(queue, "promote")
        ref = await self.bullmq.require_queue(queue)
        return int(await self.redis.zcard(ref.key("delayed")))

    # --- queue actions: promote, clean, empty, obliterate, add, schedulers (issue 14) ---

    async def clean_preview(self, queue: str, *, state: str, older_ms: int) -> int:
        """How many `state` jobs `clean` would remove (one ZCOUNT; nothing changes). A
        read-only queue is refused here already, before a person is asked to confirm."""
        self.bullmq_only(queue, "clean")
        await self.guard_change(queue)
        ref = await self.bullmq.require_queue(queue)
        return await queue_actions.count_cleanable(self.bullmq.store, ref, state, older_ms)

    async def clean(
        self, queue: str, *, state: str, older_ms: int, limit: int | None
    ) -> CleanResult:
        """Remove completed or failed jobs that finished over `older_ms` ago, oldest first."""
        self.bullmq_only(queue, "clean")
        await self.guard_change(queue)
        ref = await self.bullmq.require_queue(queue)
        return await queue_actions.clean(
            self.bullmq.store, ref, state=state, older_ms=older_ms, limit=limit
        )

    async def empty_preview(self, queue: str) -> dict[str, int]:
        """The jobs `empty` would remove, by state (nothing changes)."""
        self.bullmq_only(queue, "empty")
        ref = await self.bullmq.require_queue(queue)
        return await queue_actions.empty_counts(self.bullmq.store, ref)

    async def empty(self, queue: str) -> EmptyResult:
        """Remove every waiting, prioritized and delayed job (a scheduler's next run kept)."""
        self.bullmq_only(queue, "empty")
        await self.guard_change(queue)
        ref = await self.bullmq.require_queue(queue)
        return await queue_actions.empty(self.bullmq.store, ref)

    async def active_count(self, queue: str) -> int:
        """Jobs being worked on now (obliterate's preview)."""
        self.bullmq_only(queue, "obliterate")
        ref = await self.bullmq.require_queue(queue)
        return await queue_actions.active_count(self.bullmq.store, ref)

    async def obliterate(self, queue: str, *, force: bool) -> ObliterateResult:
        """Delete the queue and all its jobs; refused while jobs are active unless `force`."""
        self.bullmq_only(queue, "obliterate")
        await self.guard_change(queue)
        ref = await self.bullmq.require_queue(queue)
        return await queue_actions.obliterate(self.bullmq.store, ref, force=force)

    async def add(
        self,
        queue: str,
        *,
        job_name: str,
        data: Any,
        delay_ms: int | None = None,
        priority: int | None = None,
        job_id: str | None = None,
    ) -> AddedJob:
        """Add one job (PyPI bullmq's Queue.add)."""
        self.bullmq_only(queue, "add")
        await self.guard_change(queue)
        ref = await self.bullmq.require_queue(queue)
        return await queue_actions.add(
            self.bullmq.store,
            ref,
            job_name=job_name,
            data=data,
            delay_ms=delay_ms,
            priority=priority,
            job_id=job_id,
        )

    async def schedulers(self, queue: str) -> SchedulerListing:
        """The queue's job schedulers and repeatable jobs, with next and last run."""
        self.bullmq_only(queue, "schedulers")
        ref = await self.bullmq.require_queue(queue)
        return await queue_actions.schedulers(self.bullmq.store, ref)

    # --- job detail and edit-then-replay (issue 14) ---

    async def dlq_replay_one_preview(
        self, queue: str, job_id: str, edit: DataEdit
    ) -> tuple[DlqEntry, list[DataChange]]:
        """`dlq replay QUEUE ID`'s preview: the quarantined job and the diff an edit makes."""
        what = "replaying one job by id" if edit.empty else "editing a job's data on replay"
        ref = await self.bullmq_only(queue, what).require_queue(queue)
        return await bullmq_dlq.replay_one_preview(self.bullmq.store, ref, job_id, edit)

    async def dlq_replay_one(
        self,
        queue: str,
        job_id: str,
        edit: DataEdit,
        *,
        actor: str,
        checkpoint: Checkpoint = no_checkpoint,
    ) -> tuple[ReplayResult, list[DataChange]]:
        """One quarantined job back into its queue, by id, its data edited or as it is
        (bot/queues/bullmq/dlq.py replay_one: exactly once, in one script)."""
        await self.guard_change(queue)
        what = "replaying one job by id" if edit.empty else "editing a job's data on replay"
        ref = await self.bullmq_only(queue, what).require_queue(queue)
        return await bullmq_dlq.replay_one(
            self.bullmq.store, ref, job_id, edit, actor=actor, checkpoint=checkpoint
        )
