"""Queue discovery when QUEUEOPS_QUEUES is unset: SCAN for `<prefix>:*:meta`, once.

BullMQ v5 writes a queue's `meta` hash with its first job (getOrSetMaxEvents), so every
queue that ever held a job has one. DLQs (`<queue><suffix>`) are not listed as queues.
"""

from __future__ import annotations

from bot.queues.store import QueueStore

SCAN_COUNT = 1000


async def discover_queues(store: QueueStore) -> list[str]:
    head = f"{store.prefix}:"
    tail = ":meta"
    names: set[str] = set()
    async for key in store.redis.scan_iter(match=f"{head}*{tail}", count=SCAN_COUNT):
        name = key[len(head) : -len(tail)]
        if name and ":" not in name and not store.is_dlq(name):
            names.add(name)
    return sorted(names)
