"""pause, resume and retry, with npm bullmq 5's layout of a paused queue, in bounded calls.

Pause and resume are our script (lua/pause.lua says why): one RENAME in the usual case,
and when both `wait` and `paused` hold jobs, a merge of MERGE_CHUNK jobs a call, repeated
until done. Retry is PyPI bullmq's moveJobsToWait, RETRY_BATCH jobs a call, oldest first.
PyPI bullmq 3.4 writes retried jobs into `wait` even when the queue is paused, where npm
bullmq 5 keeps them in `paused`, so retrying into a paused queue is refused, and any job a
race put into `wait` of a paused queue is settled into `paused` right after.

Why these sizes: no queueops call may hold Redis over 10 ms with a million jobs queued.
Measured on 2 cores (Redis 7, 1,000,000 waiting, 100,000 failed): a merge step of 4,000 jobs
~2.2 ms (spikes to 12 ms on this noisy machine), 2,000 ~1 ms (p99 1.1-5.6 ms); a retry call
costs 6.5-12 us a job (it clears three fields and writes an event per job), 250 jobs p50 3 ms
with spikes over 10 ms, hence 100. A crash between calls loses nothing: every step is
atomic, a merged job is in `wait` or `paused`, a retried one in `failed` or `wait`.
"""

from __future__ import annotations

import time

from bot.errors import Refused
from bot.queues.bullmq.store import QueueStore
from bot.queues.keys import QueueRef

RETRY_BATCH = 100
MERGE_CHUNK = 2000


async def is_paused(store: QueueStore, queue: QueueRef) -> bool:
    return bool(await store.redis.hexists(queue.key("meta"), "paused"))


async def _pause_step(store: QueueStore, queue: QueueRef, mode: str, chunk: int) -> int:
    """One call of lua/pause.lua; returns how many jobs are still to merge."""
    keys = [
        queue.key("wait"),
        queue.key("paused"),
        queue.key("meta"),
        queue.key("marker"),
        queue.key("events"),
        queue.key("prioritized"),
        queue.key("delayed"),
    ]
    return int(await store.scripts.pause(keys=keys, args=[mode, chunk]))


async def _until_merged(
    store: QueueStore, queue: QueueRef, mode: str, left: int, chunk: int
) -> None:
    """Repeat a settle step until nothing is left. At most the steps the first count needs
    (and a few more), so a producer writing into the wrong list cannot keep us here."""
    for _ in range(left // chunk + 3):
        if left == 0:
            return
        left = await _pause_step(store, queue, mode, chunk)


async def settle_paused(store: QueueStore, queue: QueueRef, *, chunk: int = MERGE_CHUNK) -> None:
    """If the queue is paused, move jobs a PyPI bullmq write left in `wait` to `paused`."""
    left = await _pause_step(store, queue, "settle-paused", chunk)
    await _until_merged(store, queue, "settle-paused", left, chunk)


async def pause(store: QueueStore, queue: QueueRef, *, chunk: int = MERGE_CHUNK) -> bool:
    """Pause globally (workers stop taking jobs at the first call); returns whether it was
    paused before."""
    was = await is_paused(store, queue)
    left = await _pause_step(store, queue, "pause", chunk)
    await _until_merged(store, queue, "settle-paused", left, chunk)
    return was


async def resume(store: QueueStore, queue: QueueRef, *, chunk: int = MERGE_CHUNK) -> bool:
    """Resume; returns whether it was paused before."""
    was = await is_paused(store, queue)
    left = await _pause_step(store, queue, "resume", chunk)
    await _until_merged(store, queue, "settle-resumed", left, chunk)
    return was


PROMOTE_BATCH = 200
"""Due delayed jobs moved per call of lua/promote_due.lua: about 7 commands each, so a
call stays near a millisecond however many are due."""


async def promote_due(store: QueueStore, queue: QueueRef, *, now_ms: int | None = None) -> int:
    """Move `queue`'s delayed jobs whose time has come to wait, as a Worker's moveToActive
    would (see lua/promote_due.lua for why by hand); one call per PROMOTE_BATCH jobs, one
    call when none are due. Returns how many moved."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    names = ("delayed", "wait", "paused", "prioritized", "meta", "events", "pc", "marker")
    moved = 0
    while True:
        batch = int(
            await store.scripts.promote_due(
                keys=[queue.key(n) for n in names], args=[queue.base, now, PROMOTE_BATCH]
            )
        )
        moved += batch
        if batch < PROMOTE_BATCH:
            return moved


async def retry_failed(
    store: QueueStore, queue: QueueRef, *, count: int | None, batch: int = RETRY_BATCH
) -> int:
    """Move failed jobs back to wait, oldest first: `count` of them, or all. Returns how many.

    Only jobs that failed before now are moved, so a job that fails again during a
    retry-all is not retried twice. Each call moves at most `batch` jobs.
    """
    if await is_paused(store, queue):
        raise Refused(f"'{queue.shown}' is paused; resume it first, retried jobs would not run")
    now = int(time.time() * 1000)
    eligible = int(await store.redis.zcount(queue.key("failed"), "-inf", now))
    backend = store.bullmq(queue).backend
    wanted = eligible if count is None else min(count, eligible)
    left = wanted
    while left > 0:
        size = min(batch, left)
        # moveJobsToWait: ZRANGEBYSCORE failed 0 now LIMIT 0 size, so oldest first; it
        # answers 1 when it moved `size` jobs (there may be more), 0 when fewer were left.
        more = int(await backend.retryJobs("failed", size, now) or 0)
        left -= size
        if not more:
            break
    await settle_paused(store, queue)
    return wanted
