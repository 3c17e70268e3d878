"""pause, resume and retry, with npm bullmq 5's layout of a paused queue.

Resume and retry are PyPI bullmq's; pause is our script (lua/pause.lua says why). PyPI
bullmq 3.4 writes retried jobs into `wait` even when the queue is paused, where npm bullmq 5
keeps them in `paused`, so retrying into a paused queue is refused, and any job a race put
into `wait` of a paused queue is settled into `paused` right after.
"""

from __future__ import annotations

import time

from bot.errors import Refused
from bot.queues.store import QueueStore

RETRY_BATCH = 1000


async def is_paused(store: QueueStore, queue: str) -> bool:
    return bool(await store.redis.hexists(store.keys(queue).key("meta"), "paused"))


async def _pause_script(store: QueueStore, queue: str, mode: str) -> int:
    k = store.keys(queue)
    keys = [k.key("wait"), k.key("paused"), k.key("meta"), k.key("marker"), k.key("events")]
    return int(await store.scripts.pause(keys=keys, args=[mode]))


async def settle_paused(store: QueueStore, queue: str) -> int:
    """If the queue is paused, move jobs a PyPI bullmq write left in `wait` to `paused`."""
    return await _pause_script(store, queue, "settle")


async def pause(store: QueueStore, queue: str) -> bool:
    """Pause globally (workers stop taking jobs); returns whether it was paused before."""
    was = await is_paused(store, queue)
    await _pause_script(store, queue, "pause")
    return was


async def resume(store: QueueStore, queue: str) -> bool:
    """Resume; returns whether it was paused before.

    PyPI bullmq's resume merges `paused` into `wait` in bounded steps (7,000 jobs a call)
    rather than overwriting `wait`; we call it until nothing is left.
    """
    was = await is_paused(store, queue)
    target = store.bullmq(queue)
    while int(await target.resume() or 0) > 0:
        pass
    return was


async def retry_failed(store: QueueStore, queue: str, *, count: int | None) -> int:
    """Move failed jobs back to wait, oldest first: `count` of them, or all. Returns how many.

    Only jobs that failed before now are moved, so a job that fails again during a
    retry-all is not retried twice.
    """
    if await is_paused(store, queue):
        raise Refused(f"'{queue}' is paused; resume it first, retried jobs would not run")
    now = int(time.time() * 1000)
    eligible = int(await store.redis.zcount(store.keys(queue).key("failed"), "-inf", now))
    target = store.bullmq(queue)
    if count is not None:
        # One call of BullMQ's moveJobsToWait moves at most `count` jobs; Queue.retryJobs
        # would loop until every failed job is moved.
        await target.backend.retryJobs("failed", count, now)
    else:
        await target.retryJobs({"state": "failed", "count": RETRY_BATCH, "timestamp": now})
    await settle_paused(store, queue)
    return eligible if count is None else min(count, eligible)
