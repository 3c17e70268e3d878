"""The snapshot reads a page, not more (issue 9, goal 5): the next 10 jobs to run in npm
bullmq's order (the wait list's tail, then the prioritized set's head) and the newest 10
failed; the views show the top 5 of each."""

from __future__ import annotations

import time

from bot.queues.bullmq.snapshot import FAILED_SAMPLE, WAITING_SAMPLE
from bot.queues.service import QueueService


async def add(service: QueueService, queue: str, name: str, n: int, **opts: object) -> None:
    await service.store.bullmq(service.ref(queue)).addBulk(
        [{"name": name, "data": {"i": i}, "opts": opts} for i in range(n)]
    )


async def test_a_full_wait_list_fills_the_sample_and_prioritized_only_gives_its_age(
    service: QueueService,
) -> None:
    await add(service, "q", "plain", 30)
    await add(service, "q", "urgent", 5, priority=1)
    now = int(time.time() * 1000)
    [head] = await service.redis.zrange(service.ref("q").key("prioritized"), 0, 0)
    await service.redis.hset(service.ref("q").job(head), "timestamp", now - 3_600_000)
    [snap] = await service.snapshot(["q"], now_ms=now)
    assert WAITING_SAMPLE == 10
    assert [(t.key, t.count) for t in snap.top_waiting_names] == [("plain", 10)]
    assert snap.oldest_waiting_age_ms == 3_600_000  # the prioritized head still counts for age


async def test_a_short_wait_list_is_topped_up_from_prioritized(service: QueueService) -> None:
    await add(service, "q", "plain", 3)
    await add(service, "q", "urgent", 20, priority=2)
    [snap] = await service.snapshot(["q"])
    assert {t.key: t.count for t in snap.top_waiting_names} == {"plain": 3, "urgent": 7}


async def test_failures_are_the_newest_page(service: QueueService) -> None:
    keys = service.ref("q")
    for i in range(25):
        job = keys.job(str(i))
        await service.redis.hset(job, mapping={"name": "x", "failedReason": f"boom {i % 2}"})
        await service.redis.zadd(keys.key("failed"), {str(i): i})
    await service.store.bullmq(service.ref("q")).add("warm", {})  # the queue exists (meta)
    [snap] = await service.snapshot(["q"])
    assert FAILED_SAMPLE == 10 and snap.failed_sample == 10
    assert sum(t.count for t in snap.top_failure_reasons) == 10
    assert {t.key: t.count for t in snap.top_failure_reasons} == {"boom 0": 5, "boom 1": 5}
