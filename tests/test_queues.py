"""The adapter on a real Redis, with jobs made by PyPI bullmq (interop with npm bullmq is
in test_interop.py): probe, snapshot details, quarantine edge cases, replay guards."""

from __future__ import annotations

import time

import pytest
from conftest import NodeCall

from bot.errors import NotFound, Refused
from bot.patterns import compile_user_pattern
from bot.queues.service import QueueService

HOUR_MS = 3_600_000


async def add(
    service: QueueService, queue: str, n: int, name: str = "job", **opts: object
) -> list[str]:
    q = service.store.bullmq(service.ref(queue))
    return [str((await q.add(name, {"i": i}, dict(opts))).id) for i in range(n)]


async def test_probe_sees_runnable_work_only(service: QueueService, prefix: str) -> None:
    names = ["idle", "busy", "later", "urgent", "held"]
    service = QueueService(service.redis, prefixes=[prefix], queues=names)  # "idle" has no keys
    await add(service, "busy", 2)
    await add(service, "later", 1, delay=HOUR_MS)
    await add(service, "urgent", 1, priority=3)
    await add(service, "held", 1)
    await service.pause("held")
    result = await service.probe(names)
    assert result.runnable == ["busy", "urgent"]
    by = {q.name: q for q in result.queues}
    assert by["busy"].ready == 2 and by["later"].due_delayed == 0 and by["held"].is_paused

    in_two_hours = int(time.time() * 1000) + 2 * HOUR_MS
    assert (await service.probe(names, now_ms=in_two_hours)).runnable == ["busy", "later", "urgent"]


async def test_probe_counts_an_active_job_without_lock_as_work(service: QueueService) -> None:
    [job_id] = await add(service, "crashed", 1)
    keys = service.ref("crashed")
    # What a worker that died mid-job leaves: the job in `active`, its lock expired.
    await service.redis.lmove(keys.key("wait"), keys.key("active"), "RIGHT", "LEFT")
    [work] = (await service.probe(["crashed"])).queues
    assert (work.ready, work.stalled, work.runnable) == (0, 1, True)
    await service.redis.set(keys.key(f"{job_id}:lock"), "token", px=30_000)
    assert (await service.probe(["crashed"])).runnable == []


async def test_snapshot_age_counts_from_when_a_delayed_job_became_runnable(
    service: QueueService,
) -> None:
    [job_id] = await add(service, "q", 1)
    job_key = service.ref("q").job(job_id)
    now = int(time.time() * 1000)
    await service.redis.hset(
        job_key, mapping={"timestamp": now - 50 * 60_000, "delay": 20 * 60_000}
    )
    [snap] = await service.snapshot(["q"], now_ms=now)
    assert snap.oldest_waiting_age_ms == 30 * 60_000


async def test_snapshot_samples_are_bounded(service: QueueService) -> None:
    q = service.store.bullmq(service.ref("big"))
    await q.addBulk([{"name": f"kind-{i % 3}", "data": {}} for i in range(130)])
    [snap] = await service.snapshot(["big"])
    assert snap.counts["waiting"] == 130
    assert sum(t.count for t in snap.top_waiting_names) == snap.waiting_sample == 10


async def test_discovery_finds_queues_but_not_dlqs_and_names_them_on_a_miss(
    service: QueueService,
) -> None:
    await add(service, "alpha", 1)
    [job_id] = await add(service, "beta", 1)
    await service.quarantine("beta", job_id, reason="r", actor="t")
    service.store.bullmq(service.ref("beta-dlq"))  # constructing a Queue writes nothing
    assert await service.queue_names() == ["alpha", "beta"]
    with pytest.raises(NotFound, match=r"unknown queue 'gamma' \(discovered: alpha, beta\)"):
        await service.snapshot(["gamma"])


async def test_quarantine_missing_and_twice_and_collision(service: QueueService) -> None:
    ids = await add(service, "q", 2)
    missing = await service.quarantine("q", "999", reason="r", actor="t")
    assert missing.problem == "job 999 not found in queue 'q'"
    assert (await service.quarantine("q", ids[0], reason="r", actor="t")).moved
    twice = await service.quarantine("q", ids[0], reason="r", actor="t")
    assert twice.problem == f"job {ids[0]} is already quarantined in 'q-dlq'"
    # An id reused by the producer while the first copy is still in the DLQ: nothing moves.
    await service.store.bullmq(service.ref("q")).add("job", {"again": True}, {"jobId": "custom-1"})
    await service.quarantine("q", "custom-1", reason="r", actor="t")
    await service.store.bullmq(service.ref("q")).add("job", {"again": 2}, {"jobId": "custom-1"})
    clash = await service.quarantine("q", "custom-1", reason="r", actor="t")
    assert clash.problem == "'q-dlq' already holds a job with id custom-1; nothing was moved"
    assert await service.redis.exists(service.ref("q").job("custom-1")) == 1


async def test_quarantine_frees_the_deduplication_key(service: QueueService) -> None:
    q = service.store.bullmq(service.ref("q"))
    job = await q.add("job", {}, {"deduplication": {"id": "report-7"}})
    dedup_key = service.ref("q").key("de:report-7")
    assert await service.redis.get(dedup_key) == job.id
    assert (await service.quarantine("q", job.id, reason="r", actor="t")).moved
    assert await service.redis.exists(dedup_key) == 0


async def test_flow_child_is_refused(service: QueueService, node: NodeCall) -> None:
    await node("populate", queue="emails")
    children = await service.redis.zrange(service.ref("emails").key("waiting-children"), 0, -1)
    child_ids = await service.redis.lrange(service.ref("emails-children").key("wait"), 0, -1)
    move = await service.quarantine("emails-children", child_ids[0], reason="r", actor="t")
    assert not move.moved and move.problem and "belongs to a flow" in move.problem
    assert children  # the parent still waits for it


async def test_replay_refuses_a_paused_queue_and_an_id_taken_by_another_job(
    service: QueueService,
) -> None:
    await service.store.bullmq(service.ref("q")).add("job", {"v": 1}, {"jobId": "order-1"})
    await service.quarantine("q", "order-1", reason="r", actor="t")
    await service.pause("q")
    with pytest.raises(Refused, match="'q' is paused; resume it first"):
        await service.dlq_replay("q", count=1)
    await service.resume("q")
    await service.store.bullmq(service.ref("q")).add("job", {"v": 2}, {"jobId": "order-1"})
    result = await service.dlq_replay("q", count=1)
    assert [j.problem for j in result.left] == [
        "'q' already has a different job with id order-1; left in the DLQ"
    ]
    assert (await service.dlq_list("q")).depth == 1


async def test_replay_puts_back_options_but_not_the_delay(service: QueueService) -> None:
    q = service.store.bullmq(service.ref("q"))
    job = await q.add("job", {"v": 1}, {"delay": HOUR_MS, "attempts": 5, "priority": 2})
    await service.quarantine("q", job.id, reason="r", actor="t")
    await service.dlq_replay("q", count=1)
    [snap] = await service.snapshot(["q"])
    assert snap.counts["prioritized"] == 1 and snap.counts["delayed"] == 0
    opts = await service.redis.hget(service.ref("q").job(job.id), "opts")
    assert opts is not None and '"attempts":5' in opts and '"delay":' + str(HOUR_MS) not in opts


async def test_find_failed_matching_previews_without_moving(
    service: QueueService, node: NodeCall
) -> None:
    await node("fail", queue="jobs", count=5, reason="timeout")
    found, read = await service.bullmq.find_failed_matching(
        "jobs", compile_user_pattern(r"#[13]$"), limit=10
    )
    assert [job_id for job_id, _ in found] == ["2", "4"] and read == 5
    assert found[0][1] == "timeout #1"
    assert (await service.snapshot(["jobs"]))[0].counts["failed"] == 5


def test_budget_counts_a_snapshot_call_per_40_queues_and_per_slot() -> None:
    from bot.queues.keys import QueueRef
    from commands.budget import snapshot_calls

    many = [QueueRef("bull", f"q{i}") for i in range(100)]
    assert snapshot_calls(many, cluster=False) == 3  # 40 + 40 + 20
    assert snapshot_calls([], cluster=False) == 1
    tagged = [QueueRef("bull", "{orders}"), QueueRef("bull", "{emails}")]
    assert snapshot_calls(tagged, cluster=False) == 1
    assert snapshot_calls(tagged, cluster=True) == 2  # one slot each
    assert snapshot_calls([QueueRef("{bull}", f"q{i}") for i in range(5)], cluster=True) == 1
