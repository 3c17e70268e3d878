"""`queueops shell --demo`: a realistic bad night on the embedded Redis, made with PyPI
bullmq the way producers and workers make it (no hand-written keys).

- batch-jobs: a backlog (1,200 waiting, the oldest 40 minutes old), a few delayed and failed
- dsar-jobs: poison jobs: the same TypeError over and over, and a burst of ECONNRESET
- journey-jobs: paused, with work piling up
- retrain-jobs: delayed and prioritized jobs
- seed-jobs: idle, everything completed
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bullmq import Queue, Worker
from redis.asyncio import Redis

from bot.errors import OperationFailed
from bot.queues.control import pause
from bot.queues.store import QueueStore

WORKER_CLOSE_S = 5.0
"""How long a demo worker may take to stop, gently and then forced (PyPI bullmq's close()
waits for its jobs and shields itself from cancellation, so it is never awaited bare)."""
POISON = "TypeError: Cannot read properties of undefined (reading 'email')"
NETWORK = "connect ECONNRESET 10.0.3.17:5432"


async def _process(url: str, prefix: str, queue: Queue, finished: int) -> None:
    """Run a real Worker until `finished` jobs have completed or failed."""

    async def work(job: Any, token: str) -> str:
        if job.name == "poison":
            raise TypeError(POISON.removeprefix("TypeError: "))
        if job.name == "flaky":
            raise ConnectionResetError(NETWORK)
        return "ok"

    worker = Worker(
        queue.name, work, {"prefix": prefix, "connection": url, "autorun": False, "concurrency": 20}
    )
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(500):
            counts = await queue.getJobCounts("failed", "completed")
            if counts["failed"] + counts["completed"] >= finished:
                break
            await asyncio.sleep(0.02)
    finally:
        await _close_within(worker, WORKER_CLOSE_S)
        task.cancel()
        await asyncio.wait({task}, timeout=WORKER_CLOSE_S)


async def _close_within(worker: Worker, seconds: float) -> None:
    """close(), and close(force=True) if that does not finish in time; OperationFailed if
    neither does (the caller's thread is then abandoned, never the terminal)."""
    for force in (False, True):
        closing = asyncio.ensure_future(worker.close(force=force))
        done, _ = await asyncio.wait({closing}, timeout=seconds)
        if done:
            closing.result()
            return
    raise OperationFailed(f"a demo worker did not stop within {2 * seconds:.0f} s")


async def fill_demo(redis: Redis, url: str, prefix: str = "bull") -> list[str]:
    """Fill the demo queues; returns their names."""
    store = QueueStore(redis, prefix=prefix)
    now = int(time.time() * 1000)

    batch = store.bullmq("batch-jobs")
    await batch.addBulk(
        [
            {"name": "generate-report", "data": {"tenant": t}, "opts": {"attempts": 1}}
            for t in ("acme", "globex")
        ]
        + [{"name": "poison", "data": {"tenant": "initech"}, "opts": {"attempts": 1}}]
    )
    await _process(url, prefix, batch, 3)
    names = ("generate-report", "export-csv", "send-digest")
    await batch.addBulk(
        [
            {
                "name": names[i % 3],
                "data": {"tenant": f"t{i % 40}", "rows": i * 10},
                "opts": {"timestamp": now - (40 * 60_000) + i * 2000},
            }
            for i in range(1200)
        ]
    )
    for i in range(3):
        await batch.add("send-digest", {"tenant": f"t{i}"}, {"delay": (i + 1) * 15 * 60_000})

    dsar = store.bullmq("dsar-jobs")
    await dsar.addBulk(
        [
            {
                "name": "poison",
                "data": {"request": f"dsar-{i}", "user": None},
                "opts": {"attempts": 1},
            }
            for i in range(14)
        ]
        + [
            {"name": "flaky", "data": {"request": f"dsar-net-{i}"}, "opts": {"attempts": 1}}
            for i in range(3)
        ]
        + [{"name": "export-user-data", "data": {"request": f"dsar-ok-{i}"}} for i in range(4)]
    )
    await _process(url, prefix, dsar, 21)
    await dsar.addBulk(
        [{"name": "export-user-data", "data": {"request": f"dsar-new-{i}"}} for i in range(4)]
    )

    journey = store.bullmq("journey-jobs")
    await journey.addBulk([{"name": "advance-step", "data": {"journey": i}} for i in range(37)])
    await pause(store, "journey-jobs")

    retrain = store.bullmq("retrain-jobs")
    await retrain.add("retrain-model", {"model": "ranker"}, {"delay": 60 * 60_000})
    await retrain.add("retrain-model", {"model": "spam"}, {"delay": 2 * 60 * 60_000})
    await retrain.add("retrain-model", {"model": "urgent-fix"}, {"priority": 1})

    seed = store.bullmq("seed-jobs")
    await seed.addBulk([{"name": "seed-tenant", "data": {"tenant": i}} for i in range(25)])
    await _process(url, prefix, seed, 25)
    return ["batch-jobs", "dsar-jobs", "journey-jobs", "retrain-jobs", "seed-jobs"]
