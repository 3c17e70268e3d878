"""No job is ever lost: stop quarantine and replay between every pair of steps (and kill a
real process mid-way), then check with npm bullmq that each job is in the source, the DLQ,
or both, and that running the operation again finishes it."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import pytest
from conftest import REDIS_URL, NodeCall

from bot.queues.service import QueueService
from bot.queues.store import Checkpoint

HERE = Path(__file__).resolve().parent
POISON = re.compile("poison")


class Crash(Exception):
    """Stands for the process dying right after a step."""


def crash_after(step_to_die: str) -> Checkpoint:
    async def checkpoint(step: str) -> None:
        if step == step_to_die:
            raise Crash(step)

    return checkpoint


async def _places(node: NodeCall, queue: str, *job_ids: str) -> list[set[str]]:
    """Where npm bullmq finds each job: {"source"}, {"dlq"}, both, or (a loss) neither."""
    found = await node("where", queue=queue, ids=list(job_ids))
    return [{place for place, state in found[i].items() if state} for i in job_ids]


@pytest.mark.parametrize("die_after", ["batch-1", "batch-2", "batch-3"])
async def test_bulk_quarantine_stopped_after_any_batch_loses_nothing(
    service: QueueService, node: NodeCall, die_after: str
) -> None:
    ids = (await node("fail", queue="jobs", count=20, reason="poison"))["ids"]
    with pytest.raises(Crash):
        await service.quarantine_matching(
            "jobs",
            POISON,
            limit=20,
            reason="r",
            actor="t",
            batch_size=7,
            checkpoint=crash_after(die_after),
        )
    moved = min(7 * int(die_after[-1]), 20)
    counts = await node("counts", queues=["jobs", "jobs-dlq"])
    assert (counts["jobs"]["failed"], counts["jobs-dlq"]["failed"]) == (20 - moved, moved)
    places = await _places(node, "jobs", *ids)
    # Each job is wholly in one place; which ones moved follows the failed set's order
    # (finish time), not the ids.
    assert sorted(map(sorted, places)) == [["dlq"]] * moved + [["source"]] * (20 - moved)

    again = await service.quarantine_matching("jobs", POISON, limit=20, reason="r", actor="t")
    assert len(again.moved) == 20 - moved and not again.skipped
    counts = await node("counts", queues=["jobs", "jobs-dlq"])
    assert (counts["jobs"]["failed"], counts["jobs-dlq"]["failed"]) == (0, 20)


@pytest.mark.parametrize(
    ("die_after", "expected_places"),
    [("read", {"dlq"}), ("added", {"source", "dlq"}), ("released", {"source"})],
)
async def test_replay_stopped_after_any_step_loses_nothing_and_resumes(
    service: QueueService, node: NodeCall, die_after: str, expected_places: set[str]
) -> None:
    [job_id] = (await node("fail", queue="jobs", count=1, reason="poison"))["ids"]
    await node("log", queue="jobs", id=job_id, line="first attempt")
    await service.quarantine("jobs", job_id, reason="r", actor="t")

    with pytest.raises(Crash):
        await service.dlq_replay("jobs", count=1, checkpoint=crash_after(die_after))
    assert await _places(node, "jobs", job_id) == [expected_places]

    again = await service.dlq_replay("jobs", count=1)
    assert [j.job_id for j in again.replayed] == ([] if die_after == "released" else [job_id])
    job = await node("job", queue="jobs", id=job_id)
    assert job["state"] == "waiting" and job["data"]["n"] == 0
    assert job["logs"] == ["first attempt"]
    assert (await node("counts", queues=["jobs-dlq"]))["jobs-dlq"]["failed"] == 0
    processed = (await node("process", queue="jobs", count=1))["processed"]
    assert [p["id"] for p in processed] == [job_id]
    counts = (await node("counts", queues=["jobs"]))["jobs"]
    assert counts["completed"] == 1 and counts["waiting"] == 0  # once, no duplicate left


async def test_bulk_quarantine_killed_with_sigkill_loses_nothing(
    service: QueueService, node: NodeCall, prefix: str
) -> None:
    total = 1500
    await node("fail", queue="jobs", count=total, reason="poison")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "crash_quarantine.py"),
        REDIS_URL,
        prefix,
        "jobs",
        "10",
        stdout=asyncio.subprocess.PIPE,
        cwd=HERE.parent,
    )
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"started"
    await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()

    counts = await node("counts", queues=["jobs", "jobs-dlq"])
    in_source, in_dlq = counts["jobs"]["failed"], counts["jobs-dlq"]["failed"]
    assert in_source + in_dlq == total
    assert 0 < in_dlq < total, "the kill should land mid-way"
    redis = service.redis
    hashes = sum(
        [
            await redis.exists(f"{prefix}:jobs:{i}", f"{prefix}:jobs-dlq:{i}")
            for i in range(1, total + 1)
        ]
    )
    assert hashes == total  # every job hash exists exactly once

    await service.quarantine_matching("jobs", POISON, limit=total, reason="r", actor="t")
    counts = await node("counts", queues=["jobs", "jobs-dlq"])
    assert (counts["jobs"]["failed"], counts["jobs-dlq"]["failed"]) == (0, total)
