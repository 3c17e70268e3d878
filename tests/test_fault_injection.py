"""No job is ever lost: stop quarantine and replay between every pair of steps (and kill a
real process mid-way), then check with npm bullmq that each job is in the source, the DLQ,
or both, and that running the operation again finishes it."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from conftest import REDIS_URL, NodeCall

from bot.patterns import UserPattern, compile_user_pattern
from bot.queues.bullmq import dlq, quarantine
from bot.queues.bullmq.store import Checkpoint
from bot.queues.service import QueueService

HERE = Path(__file__).resolve().parent
POISON = compile_user_pattern("pois[o]n")  # a regex: pages read and matched by the client
LITERAL = compile_user_pattern("poison")  # plain text: matched inside the move script
EVERYTHING = compile_user_pattern(".*")  # moved without reading reasons


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


@pytest.mark.parametrize(
    "pattern", [POISON, LITERAL, EVERYTHING], ids=["matched", "literal", "match-all"]
)
@pytest.mark.parametrize("die_after", ["round-1", "round-2", "round-3"])
async def test_bulk_quarantine_stopped_after_any_round_loses_nothing(
    service: QueueService, node: NodeCall, die_after: str, pattern: UserPattern
) -> None:
    ids = (await node("fail", queue="jobs", count=20, reason="poison"))["ids"]
    with pytest.raises(Crash):
        # Pages of 7 moved in calls of 3, or rounds of 7 in calls of 3 (match-all): a
        # crash lands between two rounds.
        await quarantine.quarantine_matching(
            service.store,
            service.ref("jobs"),
            pattern,
            limit=20,
            reason="r",
            actor="t",
            batch_size=3,
            page_size=7,
            round_jobs=7,
            checkpoint=crash_after(die_after),
        )
    # Round N was tallied when the crash came; round N+1 may have been in flight (two are
    # sent before the first answer) and Redis ran it: either way whole jobs moved. A
    # round is 7 jobs looked at (match-all, plain text), or one call (3 jobs at most) of a
    # page's matches.
    rounds = int(die_after[-1])
    # Jobs each round moves: a regex's pages of 7 matches go in calls of 3 (3, 3, 1 a page;
    # the last page holds 6), the others take 7 a round.
    per_round = [3, 3, 1, 3, 3, 1, 3, 3] if pattern is POISON else [7, 7, 6]
    counts = await node("counts", queues=["jobs", "jobs-dlq"])
    moved = counts["jobs-dlq"]["failed"]
    assert sum(per_round[:rounds]) <= moved <= sum(per_round[: rounds + 1]), moved
    assert counts["jobs"]["failed"] == 20 - moved
    places = await _places(node, "jobs", *ids)
    # Each job is wholly in one place; which ones moved follows the failed set's order
    # (finish time), not the ids.
    assert sorted(map(sorted, places)) == [["dlq"]] * moved + [["source"]] * (20 - moved)

    again = await service.quarantine_matching("jobs", POISON, limit=20, reason="r", actor="t")
    assert len(again.moved) == 20 - moved and not again.skipped
    counts = await node("counts", queues=["jobs", "jobs-dlq"])
    assert (counts["jobs"]["failed"], counts["jobs-dlq"]["failed"]) == (0, 20)


@pytest.mark.parametrize("die_after", ["checked", "round-1", "round-2", "round-3"])
async def test_replay_stopped_after_any_step_loses_nothing_and_runs_nothing_twice(
    service: QueueService, node: NodeCall, die_after: str
) -> None:
    ids = (await node("fail", queue="jobs", count=20, reason="poison"))["ids"]
    await node("log", queue="jobs", id=ids[0], line="first attempt")
    await service.quarantine_matching("jobs", POISON, limit=20, reason="r", actor="t")

    with pytest.raises(Crash):
        await dlq.dlq_replay(
            service.store,
            service.ref("jobs"),
            count=20,
            batch_size=3,
            round_size=7,
            checkpoint=crash_after(die_after),
        )
    back = 0 if die_after == "checked" else min(7 * int(die_after[-1]), 20)
    places = await _places(node, "jobs", *ids)
    # Each job wholly in one place: each job moves inside one script call.
    assert sorted(map(sorted, places)) == [["dlq"]] * (20 - back) + [["source"]] * back

    again = await service.dlq_replay("jobs", count=20)
    assert len(again.replayed) == 20 - back and not again.left  # only what this run moved
    assert (await node("counts", queues=["jobs-dlq"]))["jobs-dlq"]["failed"] == 0
    processed = (await node("process", queue="jobs", count=20, timeoutMs=10000))["processed"]
    assert sorted(p["id"] for p in processed) == sorted(ids)  # each once
    counts = (await node("counts", queues=["jobs"]))["jobs"]
    assert counts["completed"] == 20 and counts["waiting"] == 0  # no duplicate left behind
    first = await node("job", queue="jobs", id=ids[0])
    assert first["logs"] == ["first attempt"]  # the logs came back with the job


async def run_and_kill_mid_way(prefix: str, *mode: str) -> None:
    """Start crash_quarantine.py (bulk quarantine, or `replay`) in calls of 10 and SIGKILL
    it 50 ms after its first round."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "crash_quarantine.py"),
        REDIS_URL,
        prefix,
        "jobs",
        "10",
        *mode,
        stdout=asyncio.subprocess.PIPE,
        cwd=HERE.parent,
    )
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"started"
    await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


async def job_hashes(redis: aioredis.Redis, prefix: str, total: int) -> int:
    """How many of jobs 1..total have a hash in `jobs` or in `jobs-dlq` (2 would be a copy)."""
    return sum(
        [
            await redis.exists(f"{prefix}:jobs:{i}", f"{prefix}:jobs-dlq:{i}")
            for i in range(1, total + 1)
        ]
    )


async def test_replay_killed_with_sigkill_loses_nothing_and_duplicates_nothing(
    service: QueueService, node: NodeCall, prefix: str
) -> None:
    total = 1500
    await node("fail", queue="jobs", count=total, reason="poison")
    await service.quarantine_matching("jobs", POISON, limit=total, reason="r", actor="t")
    await run_and_kill_mid_way(prefix, "replay")

    counts = await node("counts", queues=["jobs", "jobs-dlq"])
    in_queue, in_dlq = counts["jobs"]["waiting"], counts["jobs-dlq"]["failed"]
    assert in_queue + in_dlq == total
    assert 0 < in_queue < total, "the kill should land mid-way"
    assert await job_hashes(service.redis, prefix, total) == total  # each exactly once

    again = await service.dlq_replay("jobs", count=total)
    assert len(again.replayed) == in_dlq
    counts = await node("counts", queues=["jobs", "jobs-dlq"])
    assert (counts["jobs"]["waiting"], counts["jobs-dlq"]["failed"]) == (total, 0)


async def test_bulk_quarantine_killed_with_sigkill_loses_nothing(
    service: QueueService, node: NodeCall, prefix: str
) -> None:
    total = 1500
    await node("fail", queue="jobs", count=total, reason="poison")
    await run_and_kill_mid_way(prefix)

    counts = await node("counts", queues=["jobs", "jobs-dlq"])
    in_source, in_dlq = counts["jobs"]["failed"], counts["jobs-dlq"]["failed"]
    assert in_source + in_dlq == total
    assert 0 < in_dlq < total, "the kill should land mid-way"
    assert await job_hashes(service.redis, prefix, total) == total  # each exactly once

    await service.quarantine_matching("jobs", POISON, limit=total, reason="r", actor="t")
    counts = await node("counts", queues=["jobs", "jobs-dlq"])
    assert (counts["jobs"]["failed"], counts["jobs-dlq"]["failed"]) == (0, total)
