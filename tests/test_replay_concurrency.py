"""`dlq replay` is exactly-once: concurrent replays of one DLQ share it without running a job
twice or counting another run's jobs, and npm bullmq Workers process what comes back the way
npm bullmq laid it out (removeOnComplete, a paused queue, priority, lifo)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from conftest import REDIS_URL, NodeCall
from redis.asyncio.connection import AbstractConnection

from bot.patterns import compile_user_pattern
from bot.queues.service import QueueService

EVERYTHING = compile_user_pattern(".")


async def _quarantine_all(service: QueueService, queue: str, total: int) -> None:
    result = await service.quarantine_matching(
        queue, EVERYTHING, limit=total, reason="poison", actor="t"
    )
    assert len(result.moved) == total


async def test_three_concurrent_replays_run_every_job_exactly_once(
    service: QueueService, node: NodeCall, prefix: str
) -> None:
    total = 600
    ids = (
        await node(
            "fail", queue="roc", count=total, reason="poison", opts={"removeOnComplete": True}
        )
    )["ids"]
    await _quarantine_all(service, "roc", total)

    # Three replays, each on its own connection as three `queueops` processes would be,
    # with an npm bullmq Worker completing (and removing) jobs while they run.
    clients = [aioredis.Redis.from_url(REDIS_URL, decode_responses=True) for _ in range(3)]
    try:
        runners = [QueueService(c, prefixes=[prefix], queues=["roc"]) for c in clients]
        worker = asyncio.create_task(node("process", queue="roc", count=total, timeoutMs=20000))
        results = await asyncio.gather(
            *(r.dlq_replay("roc", count=10_000, batch_size=25) for r in runners)
        )
        processed = (await worker)["processed"]
    finally:
        for c in clients:
            await c.aclose()

    replayed = [j.job_id for r in results for j in r.replayed]
    assert sum(len(r.replayed) for r in results) == total  # counts add up to the DLQ size
    assert sorted(replayed) == sorted(ids)  # every job once, none twice
    assert all(not r.left for r in results)
    ran = [p["id"] for p in processed]
    assert sorted(ran) == sorted(ids)  # each job ran exactly once
    counts = await node("counts", queues=["roc", "roc-dlq"])
    assert counts["roc-dlq"]["failed"] == 0
    assert counts["roc"]["waiting"] == 0 and counts["roc"]["completed"] == 0  # removed on complete


async def test_replay_lays_jobs_out_as_npm_bullmq_adds_them(
    service: QueueService, node: NodeCall
) -> None:
    jobs = [
        {"name": "plain", "data": {"k": "plain"}, "opts": {"removeOnComplete": True}},
        {"name": "urgent", "data": {"k": "urgent"}, "opts": {"priority": 3}},
        {"name": "last-in", "data": {"k": "lifo"}, "opts": {"lifo": True}},
        {"name": "later", "data": {"k": "delayed"}, "opts": {"delay": 3_600_000}},
    ]
    ids = (await node("add", queue="mix", jobs=jobs))["ids"]
    for job_id in ids:
        assert (await service.quarantine("mix", job_id, reason="r", actor="t")).moved

    async def pause_meanwhile(step: str) -> None:
        # Someone pauses the queue after replay's check: the jobs must wait in `paused`.
        if step == "checked":
            await node("pause", queue="mix")

    result = await service.dlq_replay("mix", count=10, checkpoint=pause_meanwhile)
    assert [(j.job_id, j.name) for j in result.replayed] == list(
        zip(ids, ["plain", "urgent", "last-in", "later"], strict=True)
    )
    counts = (await node("counts", queues=["mix"]))["mix"]
    # The delay is dropped (a replayed job runs now); priority is kept.
    assert (counts["paused"], counts["prioritized"], counts["delayed"]) == (3, 1, 0)
    urgent = await node("job", queue="mix", id=ids[1])
    assert urgent["state"] == "prioritized" and urgent["opts"]["priority"] == 3

    await node("resume", queue="mix")
    processed = (await node("process", queue="mix", count=4, timeoutMs=10000))["processed"]
    assert sorted(p["id"] for p in processed) == sorted(ids)
    assert {p["id"]: p["data"]["k"] for p in processed} == dict(
        zip(ids, ["plain", "urgent", "lifo", "delayed"], strict=True)
    )
    # lifo: the job that asked for it ran first among the plain ones.
    plain_order = [p["id"] for p in processed if p["id"] != ids[1]]
    assert plain_order[0] == ids[2]
    counts = await node("counts", queues=["mix", "mix-dlq"])
    assert counts["mix"]["completed"] == 3  # removeOnComplete took the first
    assert await node("job", queue="mix", id=ids[0]) is None
    assert counts["mix-dlq"]["failed"] == 0


async def test_a_replay_reports_only_what_it_moved_and_leaves_collisions(
    service: QueueService,
) -> None:
    q = service.store.bullmq(service.ref("q"))
    for n in range(3):
        await q.add("job", {"n": n}, {"jobId": f"order-{n}"})
        await service.quarantine("q", f"order-{n}", reason="r", actor="t")
    await q.add("job", {"n": 0}, {"jobId": "order-0"})  # the producer re-added the same job
    await q.add("job", {"n": 99}, {"jobId": "order-1"})  # and reused an id for another

    first = await service.dlq_replay("q", count=2)
    assert [j.job_id for j in first.replayed] == []
    assert [j.job_id for j in first.left] == ["order-0", "order-1"]
    assert first.left[0].problem and "same name and data" in first.left[0].problem
    assert first.left[1].problem == (
        "'q' already has a different job with id order-1; left in the DLQ"
    )
    second = await service.dlq_replay("q", count=10)
    assert [j.job_id for j in second.replayed] == ["order-2"]
    assert (await service.dlq_list("q")).depth == 2  # nothing dropped without a home


async def test_a_replay_sends_its_calls_in_a_few_round_trips(
    service: QueueService, node: NodeCall, monkeypatch: pytest.MonkeyPatch
) -> None:
    total = 1200
    await node("fail", queue="jobs", count=total, reason="poison")
    await _quarantine_all(service, "jobs", total)
    writes = 0
    send = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, *args: object, **kwargs: object) -> None:
        nonlocal writes
        writes += 1
        await send(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    result = await service.dlq_replay("jobs", count=total)
    assert len(result.replayed) == total and not result.left
    # The paused check, then rounds of 1,000 jobs in pipelined calls: 3 round trips, and
    # 2 more if the server had to load the script first. One call per 100 jobs sent one
    # after the other was 13.
    assert writes <= 5, writes
    counts = await node("counts", queues=["jobs", "jobs-dlq"])
    assert (counts["jobs"]["waiting"], counts["jobs-dlq"]["failed"]) == (total, 0)
