"""Run a bulk quarantine (or a replay) in its own process so a test can SIGKILL it mid-way.

Usage: python crash_quarantine.py REDIS_URL PREFIX QUEUE BATCH_SIZE [quarantine|replay]
[cluster] (REDIS_URL is then a node of a Redis Cluster);
prints "started" once the first round is done, then carries on until every failed job is
moved into the DLQ (quarantine) or every DLQ entry is back in the queue (replay).
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from bot.patterns import compile_user_pattern
from bot.queues.bullmq import dlq, quarantine
from bot.queues.service import QueueService


async def main(
    url: str, prefix: str, name: str, batch_size: int, operation: str, cluster: bool = False
) -> None:
    client = (
        cast(aioredis.Redis, RedisCluster.from_url(url, decode_responses=True))
        if cluster
        else aioredis.Redis.from_url(url, decode_responses=True)
    )
    service = QueueService(client, prefixes=[prefix], queues=[name])
    queue = service.ref(name)
    announced = False

    async def checkpoint(step: str) -> None:
        nonlocal announced
        if not announced and step.startswith("round-"):
            print("started", flush=True)
            announced = True

    if operation == "replay":
        await dlq.dlq_replay(
            service.store,
            queue,
            count=10_000,
            batch_size=batch_size,
            round_size=batch_size,  # one call a round, so the kill lands mid-way
            checkpoint=checkpoint,
        )
    else:
        await quarantine.quarantine_matching(
            service.store,
            queue,
            compile_user_pattern("."),
            limit=10_000,
            reason="kill test",
            actor="t",
            batch_size=batch_size,
            page_size=batch_size,
            checkpoint=checkpoint,
        )
    await client.aclose()


if __name__ == "__main__":
    operation = sys.argv[5] if len(sys.argv) > 5 else "quarantine"
    on_cluster = len(sys.argv) > 6 and sys.argv[6] == "cluster"
    asyncio.run(
        main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), operation, on_cluster)
    )
