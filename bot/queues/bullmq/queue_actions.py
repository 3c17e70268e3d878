"""Queue actions on BullMQ queues: clean, empty, obliterate, add, schedulers; and the
read-only policy (QUEUEOPS_READONLY) QueueService checks before every change.

Every action is a series of bounded calls (the 10 ms rule at a million jobs), each atomic,
so a crash between two of them leaves a queue partly cleaned, never broken:

- clean: PyPI bullmq's Queue.clean (cleanJobsInSet-3.lua) on `completed`/`failed` takes
  ZRANGEBYSCORE ... LIMIT 0 n, so it is called with CLEAN_BATCH jobs a call until fewer
  come back (or the person's --limit is reached).
- empty: `delayed` and `prioritized` through the same Queue.clean with a limit (a sorted
  set: bounded); `wait`/`paused` through lua/empty_list.lua, because PyPI's Queue.drain
  reads the whole list in one call and Queue.clean on a list ends with an LREM over all of
  it (the script says more). A job scheduler's current job is kept, as npm's drain keeps
  it (without it the scheduler would stop).
- obliterate: PyPI bullmq's obliterate script (obliterate-2.lua) called with
  OBLITERATE_BATCH jobs a call; Queue.obliterate itself passes 1,000, too long a call. npm
  and PyPI leave the queue paused when an obliterate fails half-way (a job became active):
  here the queue is resumed again if it was not paused before, and the reply says so.
- add: PyPI bullmq's Queue.add (addStandardJob/addDelayedJob/addPrioritizedJob).
- schedulers: npm bullmq 5's layout, read as its JobScheduler.getJobSchedulers does: the
  `repeat` sorted set (member: the scheduler id, score: its next run) and a hash
  `repeat:<id>` per scheduler; a legacy repeatable job has no hash and a member of the
  form `name:id:endDate:tz:pattern` (npm's keyToData). The last completed run is the
  newest completed job whose id is `repeat:<id>:<millis>`, among the newest COMPLETED_SCAN.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Sequence
from typing import Any, cast

from bot.errors import Refused, UsageError
from bot.queues.bullmq import control
from bot.queues.bullmq.store import QueueStore
from bot.queues.keys import QueueRef
from bot.queues.models import (
    AddedJob,
    CleanResult,
    EmptyResult,
    ObliterateResult,
    SchedulerInfo,
    SchedulerListing,
)

CLEAN_BATCH = 100
"""Jobs one Queue.clean call removes at most. Measured on 2 cores (Redis 7, 300,000 failed
jobs, each script call's SLOWLOG duration): 200 a call p50 1.6 ms, p99 5.8 ms, slowest
11 ms on this noisy machine; 100 a call p50 0.9 ms, p99 2.5 ms, slowest 9 ms (about 8 us a
job: DEL of its keys, the dedup check, the ZREM)."""
EMPTY_BATCH = 200
"""Jobs one empty_list.lua (or Queue.clean on a sorted set) call removes at most. Measured
as above on 300,000 waiting jobs: p50 1.4 ms, p99 3.8 ms, slowest 6.6 ms."""
OBLITERATE_BATCH = 100
"""Jobs one obliterate-2.lua call removes at most (PyPI's Queue.obliterate passes 1,000,
about 10 ms a call): the same work per job as clean, so the same size."""
SCHEDULERS_SHOWN = 100
"""Job schedulers `schedulers` lists at most (one pipelined HGETALL each)."""
COMPLETED_SCAN = 1_000
"""Newest completed jobs looked at for each scheduler's last run, COMPLETED_PAGE a call."""
COMPLETED_PAGE = 250
FINISHED_STATES = ("completed", "failed")


class ReadOnlyPolicy:
    """QUEUEOPS_READONLY's entries, matched as QUEUEOPS_QUEUES' globs are (catalog.py): an
    entry without `:` against a queue's name under any prefix (`billing-*`, `payments`),
    one with `:` split at its last `:` and each part matched on its own
    (`intelliflow:pay-*`)."""

    def __init__(self, entries: Sequence[str] = ()) -> None:
        self.entries = tuple(entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def match(self, queue: QueueRef) -> str | None:
        """The first entry naming `queue`, or None."""
        for entry in self.entries:
            if ":" in entry:
                prefix, _, name = entry.rpartition(":")
                if fnmatch.fnmatchcase(queue.prefix, prefix) and fnmatch.fnmatchcase(
                    queue.name, name
                ):
                    return entry
            elif fnmatch.fnmatchcase(queue.name, entry):
                return entry
        return None


def _now_ms() -> int:
    return int(time.time() * 1000)


async def count_cleanable(store: QueueStore, queue: QueueRef, state: str, older_ms: int) -> int:
    """How many `state` jobs finished before now - older_ms: one ZCOUNT (O(log n)); the
    finished sets are scored by finishedOn."""
    return int(await store.redis.zcount(queue.key(state), "-inf", _now_ms() - older_ms))


async def clean(
    store: QueueStore,
    queue: QueueRef,
    *,
    state: str,
    older_ms: int,
    limit: int | None,
    batch: int = CLEAN_BATCH,
) -> CleanResult:
    """Remove `state` jobs that finished over `older_ms` ago, oldest first: `limit` of them
    or all, `batch` a call."""
    if state not in FINISHED_STATES:
        raise UsageError(f"--state: {state} is not one of {', '.join(FINISHED_STATES)}")
    bull = store.bullmq(queue)
    removed = 0
    while limit is None or removed < limit:
        size = batch if limit is None else min(batch, limit - removed)
        # Queue.clean(grace, limit, type): ZRANGEBYSCORE <set> 0 now-grace LIMIT 0 size.
        ids = await bull.clean(older_ms, size, state)
        removed += len(ids)
        if len(ids) < size:
            break
    left = await count_cleanable(store, queue, state, older_ms)
    return CleanResult(
        name=queue.name,
        prefix=queue.prefix,
        label=queue.shown,
        state=state,
        older_than_ms=older_ms,
        removed=removed,
        left_older=left,
    )


async def empty_counts(store: QueueStore, queue: QueueRef) -> dict[str, int]:
    """The jobs `empty` would remove, by state: LLEN/ZCARD, one pipeline."""
    pipe = store.redis.pipeline(transaction=False)
    pipe.llen(queue.key("wait"))
    pipe.llen(queue.key("paused"))
    pipe.zcard(queue.key("delayed"))
    pipe.zcard(queue.key("prioritized"))
    wait, paused, delayed, prioritized = (int(n) for n in await pipe.execute())
    return {"waiting": wait + paused, "delayed": delayed, "prioritized": prioritized}


async def empty(store: QueueStore, queue: QueueRef, *, batch: int = EMPTY_BATCH) -> EmptyResult:
    """Remove every waiting, paused, prioritized and delayed job (not active, completed or
    failed), `batch` a call; a job scheduler's current job is kept."""
    before = await empty_counts(store, queue)
    script = store.scripts.empty_list
    kept = 0
    for key in ("wait", "paused"):
        # At most the calls the first count needs, and a few more: producers adding
        # faster than we remove cannot keep us here.
        for _ in range(before["waiting"] // batch + 3):
            reply = await script(
                keys=[queue.key(key), queue.key("repeat")], args=[queue.base, batch]
            )
            removed, held = int(reply[0]), int(reply[1])
            if removed == 0:
                kept += held
                break
    bull = store.bullmq(queue)
    for state in ("prioritized", "delayed"):
        for _ in range(before[state] // batch + 3):
            # grace 0: every job created before now, i.e. all of them; Queue.clean skips
            # a job scheduler's current job.
            if len(await bull.clean(0, batch, state)) < batch:
                break
    after = await empty_counts(store, queue)
    return EmptyResult(
        name=queue.name,
        prefix=queue.prefix,
        label=queue.shown,
        removed={state: max(before[state] - after[state], 0) for state in before},
        left=after,
        kept_scheduler_jobs=kept + after["delayed"],
    )


async def active_count(store: QueueStore, queue: QueueRef) -> int:
    return int(await store.redis.llen(queue.key("active")))


async def obliterate(
    store: QueueStore, queue: QueueRef, *, force: bool, batch: int = OBLITERATE_BATCH
) -> ObliterateResult:
    """Delete the queue and every job in it, `batch` jobs a call. Refused while jobs are
    active unless `force` (their workers would fail to finish them)."""
    active = await active_count(store, queue)
    if active and not force:
        raise Refused(
            f"'{queue.shown}' has {active:,} active job(s); obliterate refused "
            "(wait for them, or add --force: their workers will fail to finish them)"
        )
    was_paused = await control.pause(store, queue)  # the script needs a paused queue
    backend = store.bullmq(queue).backend
    calls = 0
    try:
        while True:
            calls += 1
            if int(await backend.obliterate(batch, force)) == 0:
                break
    except Exception as err:
        if "active jobs" not in str(err):
            raise
        # npm and PyPI leave the queue paused here; put it back as it was.
        if not was_paused:
            await control.resume(store, queue)
        state = "still paused, as it was" if was_paused else "resumed again"
        raise Refused(
            f"obliterate of '{queue.shown}' stopped after {calls} call(s): a job became "
            f"active (add --force to remove active jobs); the queue is {state}, the jobs "
            "removed so far are gone"
        ) from None
    return ObliterateResult(
        name=queue.name, prefix=queue.prefix, label=queue.shown, calls=calls, forced=force
    )


async def add(
    store: QueueStore,
    queue: QueueRef,
    *,
    job_name: str,
    data: Any,
    delay_ms: int | None,
    priority: int | None,
    job_id: str | None,
) -> AddedJob:
    """Add one job with PyPI bullmq's Queue.add; an existing `job_id` is refused (BullMQ
    would silently keep the old job and add nothing)."""
    if job_id is not None and await store.redis.exists(queue.job(job_id)):
        raise Refused(f"job {job_id} already exists in '{queue.shown}'; pick another --job-id")
    opts: dict[str, Any] = {}
    if delay_ms:
        opts["delay"] = delay_ms
    if priority:
        opts["priority"] = priority
    if job_id is not None:
        opts["jobId"] = job_id
    job = await store.bullmq(queue).add(job_name, data, opts)
    # PyPI bullmq 3.4 writes into `wait` of a paused queue where npm keeps `paused`.
    await control.settle_paused(store, queue)
    return AddedJob(
        name=queue.name,
        prefix=queue.prefix,
        label=queue.shown,
        job_id=str(job.id),
        job_name=job_name,
        delay_ms=delay_ms or 0,
        priority=priority or 0,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


async def _last_runs(store: QueueStore, queue: QueueRef, ids: list[str]) -> dict[str, int]:
    """Each scheduler's newest completed job (id `repeat:<id>:<millis>`) among the newest
    COMPLETED_SCAN completed jobs: id -> its finishedOn (the set's score)."""
    wanted = {f"repeat:{i}:": i for i in ids}
    found: dict[str, int] = {}
    if not ids:
        return found
    for start in range(0, COMPLETED_SCAN, COMPLETED_PAGE):
        page = cast(
            list[tuple[Any, float]],
            await store.redis.zrevrange(
                queue.key("completed"), start, start + COMPLETED_PAGE - 1, withscores=True
            ),
        )
        for member, score in page:
            job = _text(member)
            if not job.startswith("repeat:"):
                continue
            scheduler = wanted.get(job[: job.rfind(":") + 1])
            if scheduler is not None and scheduler not in found:
                found[scheduler] = int(score)
        if len(page) < COMPLETED_PAGE or len(found) == len(ids):
            break
    return found


async def schedulers(store: QueueStore, queue: QueueRef) -> SchedulerListing:
    """The queue's job schedulers (and legacy repeatable jobs), soonest next run first."""
    total = int(await store.redis.zcard(queue.key("repeat")))
    rows = cast(
        list[tuple[Any, float]],
        await store.redis.zrange(queue.key("repeat"), 0, SCHEDULERS_SHOWN - 1, withscores=True),
    )
    keys = [_text(m) for m, _ in rows]
    hashes: list[dict[Any, Any]] = []
    if keys:
        pipe = store.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(queue.key(f"repeat:{key}"))
        hashes = await pipe.execute()
    last = await _last_runs(store, queue, keys)
    found: list[SchedulerInfo] = []
    for key, (_, score), raw in zip(keys, rows, hashes, strict=True):
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if fields:
            info = SchedulerInfo(
                key=key,
                job_name=fields.get("name", key),
                next_ms=int(score),
                pattern=fields.get("pattern") or None,
                every_ms=_int(fields.get("every")),
                tz=fields.get("tz") or None,
                iterations=_int(fields.get("ic")),
                limit=_int(fields.get("limit")),
                end_ms=_int(fields.get("endDate")),
                # Only storeJobScheduler writes `ic` (npm's isJobScheduler): a hash without
                # it is a legacy repeatable job's (Queue.add with `repeat`).
                legacy="ic" not in fields,
                last_completed_ms=last.get(key),
            )
        else:
            # npm's keyToData: name:id:endDate:tz:pattern (the pattern may hold ':').
            parts = key.split(":")
            info = SchedulerInfo(
                key=key,
                job_name=parts[0],
                next_ms=int(score),
                pattern=":".join(parts[4:]) or None,
                tz=(parts[3] if len(parts) > 3 else "") or None,
                end_ms=_int(parts[2]) if len(parts) > 2 else None,
                legacy=True,
                last_completed_ms=last.get(key),
            )
        found.append(info)
    return SchedulerListing(
        name=queue.name,
        prefix=queue.prefix,
        label=queue.shown,
        total=total,
        schedulers=found,
        completed_scanned=COMPLETED_SCAN,
    )
