"""queueops against the real npm bullmq 5: Node makes the state, queueops reads and moves
it, Node checks the result (and the reverse)."""

from __future__ import annotations

from typing import Any

from conftest import NodeCall

from bot.patterns import compile_user_pattern
from bot.queues.keys import COUNT_STATES
from bot.queues.service import QueueService

Q = "emails"


async def test_snapshot_counts_equal_node_in_every_state(
    service: QueueService, node: NodeCall
) -> None:
    await node("populate", queue=Q)
    queues = [Q, f"{Q}-children"]
    snaps = {s.name: s for s in await service.snapshot(queues)}
    node_counts = await node("counts", queues=queues)
    for name in queues:
        assert snaps[name].counts == node_counts[name]
        assert set(snaps[name].counts) == set(COUNT_STATES)

    # Node 5 pauses by moving `wait` into the `paused` list: counts must still agree.
    await node("pause", queue=Q)
    [paused] = await service.snapshot([Q])
    assert paused.counts == (await node("counts", queues=[Q]))[Q]
    assert paused.is_paused and paused.counts["paused"] == 3
    assert paused.oldest_waiting_age_ms is not None  # paused jobs still wait


async def test_snapshot_reads_names_and_failure_reasons_node_wrote(
    service: QueueService, node: NodeCall
) -> None:
    await node("populate", queue=Q)
    [snap] = await service.snapshot([Q])
    names = {t.key: t.count for t in snap.top_waiting_names}
    # The sample covers the next jobs to run: 3 waiting and 1 prioritized.
    assert names["send-email"] == 2 and sum(names.values()) == 4
    assert sum(t.count for t in snap.top_failure_reasons) == 2
    assert all(t.key.startswith("boom: poison payload") for t in snap.top_failure_reasons)


async def _node_job(node: NodeCall, queue: str, job_id: str) -> dict[str, Any] | None:
    result: dict[str, Any] | None = await node("job", queue=queue, id=job_id)
    return result


async def test_quarantine_moves_each_movable_state_into_the_dlq_intact(
    service: QueueService, node: NodeCall
) -> None:
    ids = (await node("populate", queue=Q))["ids"]
    picks = {
        "waiting": ids["waiting"][0],
        "delayed": ids["delayed"][0],
        "prioritized": ids["prioritized"][0],
        "failed": ids["failed"][0],
    }
    before = {state: await _node_job(node, Q, job_id) for state, job_id in picks.items()}
    await node("log", queue=Q, id=picks["failed"], line="tried the renderer")

    for state, job_id in picks.items():
        move = await service.quarantine(Q, job_id, reason=f"poison {state}", actor="test:ann")
        assert move.moved, move.problem
        assert move.from_state == state

    # A queue paused by Node: its jobs sit in the `paused` list.
    await node("pause", queue=Q)
    move = await service.quarantine(Q, ids["waiting"][1], reason="poison paused", actor="t")
    assert move.moved and move.from_state == "paused"

    for state, job_id in picks.items():
        assert await _node_job(node, Q, job_id) is None, f"{state} job still in {Q}"
        moved = await _node_job(node, f"{Q}-dlq", job_id)
        assert moved is not None
        original = before[state]
        assert original is not None
        assert moved["state"] == "failed"
        assert moved["failedReason"] == f"quarantined: poison {state} (by test:ann)"
        for field in ("name", "data", "attemptsMade", "timestamp", "stacktrace"):
            assert moved[field] == original[field], (state, field)
        assert moved["opts"] == original["opts"]
    failed_copy = await _node_job(node, f"{Q}-dlq", picks["failed"])
    assert failed_copy is not None and failed_copy["logs"] == ["tried the renderer"]

    counts = await node("counts", queues=[Q, f"{Q}-dlq"])
    assert counts[f"{Q}-dlq"]["failed"] == 5
    assert counts[Q] == {
        "waiting": 0,
        "paused": 1,
        "delayed": 0,
        "prioritized": 0,
        "failed": 1,
        "active": 1,
        "completed": 1,
        "waiting-children": 1,
    }
    entry = await service.dlq_show(Q, picks["failed"])
    assert entry.original_failed_reason is not None
    assert entry.original_failed_reason.startswith("boom:")
    assert entry.quarantined_by == "test:ann" and entry.from_state == "failed"


async def test_active_completed_and_parent_jobs_are_refused_and_stay(
    service: QueueService, node: NodeCall
) -> None:
    ids = (await node("populate", queue=Q))["ids"]
    active = await service.quarantine(Q, ids["active"][0], reason="x", actor="t")
    assert not active.moved and active.problem and "lock" in active.problem
    done = await service.quarantine(Q, ids["completed"][0], reason="x", actor="t")
    assert not done.moved and done.problem and "is completed" in done.problem
    parent = await service.quarantine(Q, ids["waiting-children"][0], reason="x", actor="t")
    assert not parent.moved and parent.problem and "waiting-children" in parent.problem
    for state in ("active", "completed", "waiting-children"):
        job = await _node_job(node, Q, ids[state][0])
        assert job is not None and job["state"] == state
    assert (await node("counts", queues=[f"{Q}-dlq"]))[f"{Q}-dlq"]["failed"] == 0


async def test_bulk_quarantine_by_reason_then_replay_is_processed_by_a_node_worker(
    service: QueueService, node: NodeCall
) -> None:
    await node("fail", queue="jobs", count=6, reason="ECONNRESET talking to s3")
    result = await service.quarantine_matching(
        "jobs", compile_user_pattern(r"ECONNRESET.*#[0-3]$"), limit=3, reason="s3 outage", actor="t"
    )
    assert [m.job_id for m in result.moved] == ["1", "2", "3"]  # oldest first, limit kept
    counts = await node("counts", queues=["jobs", "jobs-dlq"])
    assert counts["jobs"]["failed"] == 3 and counts["jobs-dlq"]["failed"] == 3

    replay = await service.dlq_replay("jobs", count=2)
    assert [j.job_id for j in replay.replayed] == ["1", "2"]
    processed = (await node("process", queue="jobs", count=2, timeoutMs=5000))["processed"]
    assert sorted(p["id"] for p in processed) == ["1", "2"]
    assert {p["data"]["n"] for p in processed} == {0, 1}
    counts = await node("counts", queues=["jobs", "jobs-dlq"])
    assert counts["jobs"]["completed"] == 2 and counts["jobs-dlq"]["failed"] == 1


async def test_pause_is_node5_layout_and_survives_a_node_resume(
    service: QueueService, node: NodeCall
) -> None:
    await node("add", queue="media", jobs=[{"name": "thumb", "data": {"i": i}} for i in range(3)])
    await service.pause("media")
    assert (await node("is-paused", queue="media"))["paused"] is True
    counts = (await node("counts", queues=["media"]))["media"]
    assert counts["waiting"] == 0 and counts["paused"] == 3
    # A producer on Node adds while paused; then Bull Board (Node) resumes: nothing lost.
    await node("add", queue="media", jobs=[{"name": "thumb", "data": {"i": 9}}])
    await node("resume", queue="media")
    assert (await node("counts", queues=["media"]))["media"]["waiting"] == 4

    # And the other way round: Node pauses, queueops resumes.
    await node("pause", queue="media")
    await service.resume("media")
    counts = (await node("counts", queues=["media"]))["media"]
    assert counts["waiting"] == 4 and counts["paused"] == 0
    assert (await node("is-paused", queue="media"))["paused"] is False


async def test_retry_count_moves_the_oldest_failed_jobs_back(
    service: QueueService, node: NodeCall
) -> None:
    await node("fail", queue="jobs", count=4, reason="flaky")
    assert await service.retry("jobs", count=3) == 3
    counts = (await node("counts", queues=["jobs"]))["jobs"]
    assert counts["failed"] == 1 and counts["waiting"] == 3
    job = await _node_job(node, "jobs", "4")
    assert job is not None and job["state"] == "failed"  # the newest stays
    assert await service.retry("jobs", count=None) == 1
    assert (await node("counts", queues=["jobs"]))["jobs"]["waiting"] == 4
