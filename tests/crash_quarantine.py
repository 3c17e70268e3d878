"""Run a bulk quarantine in its own process so a test can SIGKILL it mid-way.

Usage: python crash_quarantine.py REDIS_URL PREFIX QUEUE BATCH_SIZE; prints "started"
once the first batch is done, then carries on until all failed jobs are moved.
"""

from __future__ import annotations

import asyncio
import re
import sys

import redis.asyncio as aioredis

from bot.queues.service import QueueService


async def main(url: str, prefix: str, queue: str, batch_size: int) -> None:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    service = QueueService(client, prefix=prefix, queues=[queue])
    announced = False

    async def checkpoint(step: str) -> None:
        nonlocal announced
        if not announced:
            print("started", flush=True)
            announced = True

    await service.quarantine_matching(
        queue,
        re.compile("."),
        limit=10_000,
        reason="kill test",
        actor="t",
        batch_size=batch_size,
        checkpoint=checkpoint,
    )
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
