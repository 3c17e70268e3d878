"""The filtered bulk actions: retry, quarantine, remove (quarantine, or --purge), promote,
on exactly the jobs a filter selects (bot/queues/bullmq/search.py), and `promote`.

Nothing here moves a job a second way: quarantine and remove go through the quarantine
script by ids (quarantine.move_by_ids, lua/quarantine.lua: each job atomic, every state it
supports, active and flow jobs refused with their reason); retry, promote and purge are
PyPI bullmq's own scripts for one job (reprocessJob, promote, removeJob: what npm bullmq's
Job.retry, Job.promote and Job.remove run), so each job is moved as BullMQ moves it and a
job that changed state since the scan is refused by the script, not moved twice. Every
step is one atomic call per job (or per batch of quarantined jobs): a crash in the middle
leaves each job wholly where it was or where it went.

Calls go CONCURRENCY at a time (each a few tens of microseconds of Redis time), and a
quarantine batch holds at most QUARANTINE_BATCH sorted-set jobs; a job in a list (waiting,
paused) goes alone, since the script may compare up to LIST_SCAN_BOUND entries to find it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.errors import NotFound, Refused
from bot.queues.bullmq import control
from bot.queues.bullmq.quarantine import MOVABLE_STATES, move_by_ids
from bot.queues.bullmq.search import ScannedJob
from bot.queues.bullmq.store import QueueStore
from bot.queues.keys import QueueRef
from bot.queues.models import ActionSkip

CONCURRENCY = 50
QUARANTINE_BATCH = 50
"""Sorted-set jobs per quarantine call: ~7 commands a job, well under a millisecond."""
PROMOTE_ALL_BATCH = 100
"""Delayed jobs per call of `promote --all` (PyPI bullmq's promoteJobs: moveJobsToWait,
~10 us a job, the cost control.py measured for a retry)."""
LIST_STATES = frozenset({"waiting", "paused", "active"})
ACTIONS = ("retry", "quarantine", "remove", "purge", "promote")
CAN = {
    "retry": frozenset({"failed", "completed"}),
    "promote": frozenset({"delayed"}),
    "quarantine": frozenset(MOVABLE_STATES),
    "remove": frozenset(MOVABLE_STATES),
    "purge": frozenset(s for s in MOVABLE_STATES) | {"completed", "waiting-children"},
}
"""The states each action takes a job from; a match in another state is skipped, with why."""


@dataclass
class Outcome:
    done: list[str] = field(default_factory=list)
    skipped: list[ActionSkip] = field(default_factory=list)

    def skip(self, job_id: str, problem: str) -> None:
        self.skipped.append(ActionSkip(job_id=job_id, problem=problem))


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


async def _each(
    jobs: Sequence[ScannedJob],
    call: Callable[[ScannedJob], Awaitable[Any]],
    outcome: Outcome,
    explain: Callable[[ScannedJob, Any], str | None],
) -> None:
    """`call` for every job, CONCURRENCY at a time; `explain(job, answer)` says why a
    job was not acted on (None: it was). A script's refusal (a BullMQ error code) is the
    job's problem; a Redis failure stops the run (the caller says how far it got)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    for start in range(0, len(jobs), CONCURRENCY):
        chunk = jobs[start : start + CONCURRENCY]
        answers = await asyncio.gather(*(call(j) for j in chunk), return_exceptions=True)
        for job, answer in zip(chunk, answers, strict=True):
            if isinstance(answer, RedisConnectionError | RedisTimeoutError | OSError):
                raise answer
            if isinstance(answer, BaseException):
                outcome.skip(job.job_id, f"job {job.job_id}: {_first_line(answer)}")
                continue
            problem = explain(job, answer)
            if problem is None:
                outcome.done.append(job.job_id)
            else:
                outcome.skip(job.job_id, problem)


def _wrong_state(action: str, jobs: Sequence[ScannedJob], outcome: Outcome) -> list[ScannedJob]:
    allowed = CAN[action]
    keep = []
    for job in jobs:
        if job.state in allowed:
            keep.append(job)
        else:
            outcome.skip(
                job.job_id,
                f"job {job.job_id} is {job.state}; {action} takes "
                f"{', '.join(sorted(allowed))} jobs",
            )
    return keep


async def quarantine_jobs(
    store: QueueStore,
    queue: QueueRef,
    jobs: Sequence[ScannedJob],
    *,
    reason: str,
    actor: str,
    action: str = "quarantine",
) -> Outcome:
    """Quarantine (or remove: reason "removed") the jobs by id through lua/quarantine.lua."""
    outcome = Outcome()
    keep = _wrong_state(action, jobs, outcome)
    listed = [j.job_id for j in keep if j.state in LIST_STATES]
    ranked = [j.job_id for j in keep if j.state not in LIST_STATES]
    batches = [[i] for i in listed] + [
        ranked[s : s + QUARANTINE_BATCH] for s in range(0, len(ranked), QUARANTINE_BATCH)
    ]
    for ids in batches:
        moves = await move_by_ids(
            store, queue, ids, reason=reason, actor=actor, states=MOVABLE_STATES
        )
        for move in moves:
            if move.moved:
                outcome.done.append(move.job_id)
            else:
                outcome.skip(move.job_id, move.problem or f"job {move.job_id} was not moved")
    return outcome


async def retry_jobs(store: QueueStore, queue: QueueRef, jobs: Sequence[ScannedJob]) -> Outcome:
    """Retry each failed (or completed) job by id: PyPI bullmq's reprocessJob, as npm's
    Job.retry. Refused on a paused queue, as `retry` is (control.retry_failed says why)."""
    if await control.is_paused(store, queue):
        raise Refused(f"'{queue.shown}' is paused; resume it first, retried jobs would not run")
    outcome = Outcome()
    keep = _wrong_state("retry", jobs, outcome)
    backend = store.bullmq(queue).backend
    opts = await _opts(store, queue, [j.job_id for j in keep])

    async def call(job: ScannedJob) -> Any:
        return await backend.reprocessJob(_JobHandle(job.job_id, opts[job.job_id]), job.state)

    await _each(keep, call, outcome, lambda job, answer: None)
    await control.settle_paused(store, queue)
    return outcome


async def promote_jobs(store: QueueStore, queue: QueueRef, jobs: Sequence[ScannedJob]) -> Outcome:
    """Promote each delayed job by id: PyPI bullmq's promote script (npm's Job.promote)."""
    outcome = Outcome()
    keep = _wrong_state("promote", jobs, outcome)
    backend = store.bullmq(queue).backend

    async def call(job: ScannedJob) -> Any:
        return await backend.promote(job.job_id)

    await _each(keep, call, outcome, lambda job, answer: None)
    await control.settle_paused(store, queue)
    return outcome


async def purge_jobs(store: QueueStore, queue: QueueRef, jobs: Sequence[ScannedJob]) -> Outcome:
    """Delete each job for good: PyPI bullmq's removeJob (npm's Job.remove), which refuses a
    job a worker holds (answers 0) and removes its children with it, as npm does."""
    outcome = Outcome()
    keep = _wrong_state("purge", jobs, outcome)
    backend = store.bullmq(queue).backend

    async def call(job: ScannedJob) -> Any:
        return await backend.remove(job.job_id, True)

    def explain(job: ScannedJob, answer: Any) -> str | None:
        if int(answer or 0) == 1:
            return None
        return f"job {job.job_id} is locked by a worker (active); it was not removed"

    await _each(keep, call, outcome, explain)
    return outcome


async def promote_one(store: QueueStore, queue: QueueRef, job_id: str) -> None:
    """`promote QUEUE ID`: one delayed job to waiting (PyPI bullmq's Job.promote script)."""
    key = queue.key("delayed")
    if await store.redis.zscore(key, job_id) is None:
        if not await store.redis.exists(queue.key(job_id)):
            raise NotFound(f"job {job_id} not found in queue '{queue.shown}'")
        raise Refused(f"job {job_id} in '{queue.shown}' is not delayed; nothing to promote")
    try:
        await store.bullmq(queue).backend.promote(job_id)
    except Exception as err:  # PyPI bullmq raises a bare Exception for a script's code
        from redis.exceptions import RedisError

        if isinstance(err, RedisError | OSError):
            raise
        raise Refused(f"job {job_id} in '{queue.shown}': {_first_line(err)}") from None
    await control.settle_paused(store, queue)


async def promote_all(store: QueueStore, queue: QueueRef, *, batch: int = PROMOTE_ALL_BATCH) -> int:
    """`promote QUEUE --all`: every delayed job to waiting, `batch` a call (PyPI bullmq's
    promoteJobs step, the same script as npm's Queue.promoteJobs). Returns how many moved,
    counted from the delayed set around each call (a producer adding delayed jobs during
    the run is not counted as promoted). At most the calls the first count needs, and a
    few more, so a producer cannot keep it here."""
    key = queue.key("delayed")
    backend = store.bullmq(queue).backend
    left = int(await store.redis.zcard(key))
    moved = 0
    for _ in range(left // batch + 3):
        if left == 0:
            break
        await backend.promoteJobs(min(batch, left))
        after = int(await store.redis.zcard(key))
        moved += max(0, left - after) if after < left else 0
        if after >= left:
            break
        left = after
    await control.settle_paused(store, queue)
    return moved


@dataclass(frozen=True)
class _JobHandle:
    """What PyPI bullmq's reprocessJob reads of a Job: its id and options (`lifo`)."""

    id: str
    opts: dict[str, Any]


async def _opts(store: QueueStore, queue: QueueRef, ids: Sequence[str]) -> dict[str, Any]:
    """Each job's options (reprocessJob pushes a lifo job to the other end), one pipeline."""
    import json

    async with store.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(queue.key(job_id), "opts")
        raw = await pipe.execute() if ids else []
    out: dict[str, Any] = {}
    for job_id, text in zip(ids, raw, strict=True):
        try:
            parsed = json.loads(text) if text else {}
        except ValueError:
            parsed = {}
        out[job_id] = parsed if isinstance(parsed, dict) else {}
    return out
