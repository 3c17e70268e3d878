"""Long lists, bounded calls (issue 9 goal 1): quarantine of the oldest, newest and a middle
job of a long wait list, and pause, resume and retry of large sets, each in calls whose
Redis work is bounded, with npm bullmq checking that nothing is lost.

The lists are 50,000 jobs (1,000,000 would make the suite slow) with the bounds injected
smaller; the work is read from what the scripts report (entries compared, jobs left to
merge, jobs per call), never from timings. bench/ measures the real sizes.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from conftest import REDIS_URL, NodeCall

from bot.cli import run_words
from bot.config import load_settings
from bot.queues.bullmq import control
from bot.queues.bullmq.quarantine import NS_PER_LIST_ENTRY
from bot.queues.service import QueueService
from commands.quarantine import QuarantineRefusedReply

Q = "big"
LONG = 50_000
BOUND = 1_000
CHUNK = 1_000

# Jobs ARGV[1]..ARGV[2] the way npm bullmq's addStandardJob stores them (hash, then LPUSH:
# the newest at the head, workers take the tail), or failed the way moveToFinished leaves
# them, 10,000 per call.
_BUILD = """
local base, first, last, now, list = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
for i = first, last do
  local id = tostring(i)
  redis.call("HSET", base .. id, "name", "bulk", "data", '{"i":' .. i .. '}', "opts",
    '{"attempts":1}', "timestamp", now, "delay", 0, "priority", 0)
  if list == "failed" then
    redis.call("HSET", base .. id, "atm", 1, "ats", 1, "failedReason", "boom #" .. i,
      "stacktrace", "[]", "processedOn", now, "finishedOn", now + i)
    redis.call("ZADD", base .. "failed", now + i, id)
  else
    redis.call("LPUSH", base .. list, id)
  end
end
redis.call("HSETNX", base .. "meta", "opts.maxLenEvents", 10000)
return last
"""


async def build(
    redis: aioredis.Redis, prefix: str, first: int, last: int, *, into: str = "wait"
) -> None:
    """Jobs first..last into `into` (wait, paused or failed), ids ascending = oldest first."""
    now = int(time.time() * 1000) - 3_600_000
    for start in range(first, last + 1, 10_000):
        end = min(start + 9_999, last)
        await redis.eval(_BUILD, 0, f"{prefix}:{Q}:", start, end, now, into)


async def where(node: NodeCall, ids: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = await node("where", queue=Q, ids=ids)
    return found


async def test_oldest_newest_and_middle_of_a_long_wait_list(
    service: QueueService, redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    await build(redis, prefix, 1, LONG)
    oldest, near_oldest, newest, middle = "1", "501", str(LONG), str(LONG // 2)

    def move(job_id: str, *, deep: bool = False) -> Any:
        return service.quarantine(
            Q, job_id, reason="poison", actor="t", scan_bound=BOUND, deep=deep
        )

    # The oldest is at the tail: one comparison to find it, one to remove it.
    first = await move(oldest)
    assert first.moved and (first.list_end, first.depth, first.scanned) == ("oldest", 0, 2)
    # 499 jobs from the tail now: LPOS and LREM each pass 500 entries, nothing more.
    near = await move(near_oldest)
    assert (near.list_end, near.depth, near.scanned) == ("oldest", 499, 2 * 500)
    # The newest is at the head: the bounded tail search misses (BOUND entries), then one
    # comparison from the head and one LREM: the list's length never enters the cost.
    head = await move(newest)
    assert (head.list_end, head.depth, head.scanned) == ("newest", 0, BOUND + 2)

    # The middle: refused, with the facts, and nothing moved.
    refused = await move(middle)
    length = LONG - 3
    assert not refused.moved and refused.outcome == f"deep:wait:{length}"
    assert (refused.list_name, refused.list_length, refused.scan_bound) == ("wait", length, BOUND)
    assert refused.estimated_ms == round(length * NS_PER_LIST_ENTRY / 1e6, 1)
    assert refused.problem is not None
    assert f"not within {BOUND:,} jobs of either end of '{Q}''s wait list" in refused.problem
    assert "--deep" in refused.problem and "ms" in refused.problem
    assert (await where(node, [middle]))[middle] == {"source": "waiting", "dlq": None}

    # Accepted: moved in one call from the nearer end.
    deep = await move(middle, deep=True)
    assert deep.moved and deep.from_state == "waiting" and deep.depth is not None
    assert deep.depth >= BOUND

    # npm bullmq: the four are in the DLQ, failed, intact; every other job still waits.
    moved = [oldest, near_oldest, newest, middle]
    assert await where(node, moved) == {i: {"source": None, "dlq": "failed"} for i in moved}
    counts = await node("counts", queues=[Q, f"{Q}-dlq"])
    assert counts[Q]["waiting"] == LONG - 4 and counts[f"{Q}-dlq"]["failed"] == 4
    copy = await node("job", queue=f"{Q}-dlq", id=middle)
    assert copy["data"] == {"i": LONG // 2} and copy["failedReason"] == "quarantined: poison (by t)"
    rest = await redis.lrange(f"{prefix}:{Q}:wait", 0, -1)
    assert len(rest) == len(set(rest)) == LONG - 4 and not set(moved) & set(rest)


async def test_the_default_bound_refuses_a_middle_job_with_the_cost_in_json(
    redis: aioredis.Redis, prefix: str
) -> None:
    await build(redis, prefix, 1, LONG)  # the middle is 25,000 deep: over the 20,000 bound
    settings = load_settings(redis_url=REDIS_URL, prefix=prefix, state_prefix=f"{prefix}-state")
    words = ["quarantine", Q, str(LONG // 2), "--reason", "poison"]
    reply = await run_words(words, settings)
    assert isinstance(reply, QuarantineRefusedReply) and reply.exit_code == 1
    data = reply.data()
    assert data["ok"] is False and "--deep" in data["error"] and "\n" not in data["error"]
    assert data["move"]["listLength"] == LONG and data["move"]["scanBound"] == 20_000
    assert data["move"]["estimatedMs"] == round(LONG * NS_PER_LIST_ENTRY / 1e6, 1)
    assert await redis.llen(f"{prefix}:{Q}:wait") == LONG

    done = await run_words([*words, "--deep"], settings)
    assert done.ok and await redis.llen(f"{prefix}:{Q}:wait") == LONG - 1


async def test_pause_merges_a_long_wait_list_in_bounded_steps_and_a_crash_loses_nothing(
    service: QueueService, redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    # A half-merged leftover: 3 jobs in `paused` of a running queue, 50,000 in `wait`.
    await build(redis, prefix, 1, 3, into="paused")
    await build(redis, prefix, 4, LONG + 3)
    store = service.store
    wait, paused = service.ref(Q).key("wait"), service.ref(Q).key("paused")

    # One call, as if the process died right after it: paused for npm, and every job in
    # one of the two lists; only CHUNK jobs moved.
    left = await control._pause_step(store, service.ref(Q), "pause", CHUNK)
    assert left == LONG - CHUNK and await redis.llen(paused) == 3 + CHUNK
    assert (await node("is-paused", queue=Q))["paused"] is True
    counts = (await node("counts", queues=[Q]))[Q]
    assert counts["waiting"] + counts["paused"] == LONG + 3

    # The next pause finishes the merge, a chunk a call.
    steps: list[int] = []
    real_step = control._pause_step

    async def counted(*args: Any) -> int:
        steps.append(await redis.llen(wait))
        return await real_step(*args)

    control._pause_step = counted  # type: ignore[assignment]
    try:
        assert await control.pause(store, service.ref(Q), chunk=CHUNK) is True
    finally:
        control._pause_step = real_step  # type: ignore[assignment]
    assert len(steps) == (LONG - CHUNK) // CHUNK  # 49,000 left, 1,000 a call
    assert all(before - after <= CHUNK for before, after in itertools.pairwise(steps))
    counts = (await node("counts", queues=[Q]))[Q]
    assert counts["waiting"] == 0 and counts["paused"] == LONG + 3
    # The jobs that were waiting run first after a resume, oldest (4) first.
    assert await redis.lindex(paused, -1) == "4"

    # npm bullmq resumes (RENAME paused over wait): nothing lost.
    await node("resume", queue=Q)
    counts = (await node("counts", queues=[Q]))[Q]
    assert counts["waiting"] == LONG + 3 and counts["paused"] == 0


async def test_resume_merges_in_bounded_steps_into_a_wait_list(
    service: QueueService, redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    await build(redis, prefix, 1, 20_000)
    await node("pause", queue=Q)  # npm 5: RENAME wait -> paused
    await build(redis, prefix, 20_001, 20_010)  # a bullmq 6 producer wrote into wait
    store = service.store
    left = await control._pause_step(store, service.ref(Q), "resume", CHUNK)
    assert left == 20_000 - CHUNK
    assert (await node("is-paused", queue=Q))["paused"] is False
    assert await control.resume(store, service.ref(Q), chunk=CHUNK) is False
    counts = (await node("counts", queues=[Q]))[Q]
    assert counts["waiting"] == 20_010 and counts["paused"] == 0
    # What was paused runs before what arrived during the pause: the oldest first.
    processed = (await node("process", queue=Q, count=2, timeoutMs=5000))["processed"]
    assert [p["id"] for p in processed] == ["1", "2"]


@pytest.mark.parametrize(("count", "sizes"), [(None, [250] * 20), (1_100, [250] * 4 + [100])])
async def test_retry_moves_a_large_failed_set_in_bounded_calls(
    service: QueueService,
    redis: aioredis.Redis,
    prefix: str,
    node: NodeCall,
    count: int | None,
    sizes: list[int],
) -> None:
    await build(redis, prefix, 1, 5_000, into="failed")
    backend = service.store.bullmq(service.ref(Q)).backend
    real = backend.retryJobs
    calls: list[int] = []

    async def counted(state: str, size: int, timestamp: int) -> Any:
        calls.append(size)
        return await real(state, size, timestamp)

    backend.retryJobs = counted
    retried = await control.retry_failed(service.store, service.ref(Q), count=count, batch=250)
    assert calls == sizes and retried == sum(sizes)
    counts = (await node("counts", queues=[Q]))[Q]
    assert counts["waiting"] == sum(sizes) and counts["failed"] == 5_000 - sum(sizes)
    # Oldest first: job 1 failed first and is back in wait; with a count the newest stays.
    assert (await where(node, ["1", "5000"])) == {
        "1": {"source": "waiting", "dlq": None},
        "5000": {"source": "waiting" if count is None else "failed", "dlq": None},
    }
