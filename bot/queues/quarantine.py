"""`quarantine`: move one job, or failed jobs matching a regex, into the queue's DLQ.

Each job moves inside one script call (lua/quarantine.lua), so a crash at any point leaves
every job wholly in the source or wholly in the DLQ. Bulk moves go in small batches so no
single call blocks Redis for long.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from bot.queues.models import BulkQuarantineResult, JobMove
from bot.queues.store import Checkpoint, QueueStore, no_checkpoint

MOVABLE_STATES = ("waiting", "paused", "delayed", "prioritized", "failed")
BATCH_SIZE = 50
PAGE_SIZE = 500
MATCH_CHARS = 2000


def _problem(queue: str, dlq: str, job_id: str, code: str) -> str:
    if code == "missing":
        return f"job {job_id} not found in queue '{queue}'"
    if code == "active":
        return (
            f"job {job_id} in '{queue}' is active: a worker holds its lock. Let it finish or "
            "fail, then quarantine it"
        )
    if code.startswith("dlq-has:"):
        return f"'{dlq}' already holds a job with id {job_id}; nothing was moved"
    if code.startswith("flow:"):
        return (
            f"job {job_id} in '{queue}' belongs to a flow (parent {code[5:]}); moving it "
            "would strand its parent"
        )
    if code.startswith("state:"):
        state = code[6:]
        return (
            f"job {job_id} in '{queue}' is {state}; only "
            f"{', '.join(MOVABLE_STATES)} jobs can be quarantined"
        )
    return f"job {job_id} in '{queue}': unexpected outcome {code}"


async def _move(
    store: QueueStore,
    queue: str,
    job_ids: Sequence[str],
    *,
    reason: str,
    actor: str,
    states: Sequence[str],
) -> list[JobMove]:
    src, dlq = store.keys(queue), store.dlq_keys(queue)
    keys = [
        src.key(s)
        for s in (
            "wait",
            "paused",
            "active",
            "delayed",
            "prioritized",
            "failed",
            "completed",
            "waiting-children",
            "meta",
            "events",
        )
    ] + [dlq.key("failed"), dlq.key("meta"), dlq.key("events")]
    args: list[str | int] = [
        src.base,
        dlq.base,
        int(time.time() * 1000),
        reason,
        actor,
        queue,
        ",".join(states),
        *job_ids,
    ]
    outcomes: list[str] = await store.scripts.quarantine(keys=keys, args=args)
    moves = []
    for job_id, code in zip(job_ids, outcomes, strict=True):
        if code.startswith("moved:"):
            moves.append(JobMove(job_id=job_id, moved=True, outcome=code, from_state=code[6:]))
        else:
            problem = _problem(queue, dlq.name, job_id, code)
            moves.append(JobMove(job_id=job_id, moved=False, outcome=code, problem=problem))
    return moves


async def quarantine_job(
    store: QueueStore, queue: str, job_id: str, *, reason: str, actor: str
) -> JobMove:
    """Move one job; a problem (active, missing, wrong state) comes back in `problem`."""
    [move] = await _move(store, queue, [job_id], reason=reason, actor=actor, states=MOVABLE_STATES)
    if move.outcome == "missing":
        dlq = store.dlq_keys(queue)
        if await store.redis.zscore(dlq.key("failed"), job_id) is not None:
            move = move.model_copy(
                update={"problem": f"job {job_id} is already quarantined in '{dlq.name}'"}
            )
    return move


async def failed_page(
    store: QueueStore, queue: str, offset: int, size: int = PAGE_SIZE
) -> list[tuple[str, str]]:
    """(id, failedReason) for one page of the failed set, oldest first, in one call."""
    keys = store.keys(queue)
    flat: list[str] = await store.scripts.failed_page(
        keys=[keys.key("failed")], args=[keys.base, offset, size]
    )
    return list(zip(flat[0::2], flat[1::2], strict=True))


async def find_matching(
    store: QueueStore, queue: str, pattern: re.Pattern[str], *, limit: int
) -> tuple[list[tuple[str, str]], int]:
    """Failed jobs whose reason matches, oldest first, at most `limit`; and how many were read.
    Nothing moves: this is the preview a confirmation shows."""
    found: list[tuple[str, str]] = []
    offset = 0
    while len(found) < limit:
        page = await failed_page(store, queue, offset)
        if not page:
            break
        offset += len(page)
        found += [(i, r) for i, r in page if pattern.search(r[:MATCH_CHARS])][: limit - len(found)]
    return found, offset


async def quarantine_matching(
    store: QueueStore,
    queue: str,
    pattern: re.Pattern[str],
    *,
    limit: int,
    reason: str,
    actor: str,
    batch_size: int = BATCH_SIZE,
    checkpoint: Checkpoint = no_checkpoint,
) -> BulkQuarantineResult:
    """Move up to `limit` failed jobs whose failedReason matches `pattern`, oldest first.

    Pages are read by index from the oldest end; new failures land at the newest end, so
    the only shift comes from our own moves, which the offset accounts for.
    """
    moved: list[JobMove] = []
    skipped: list[JobMove] = []
    offset = scanned = matched = batches = 0
    while len(moved) < limit:
        page = await failed_page(store, queue, offset)
        if not page:
            break
        scanned += len(page)
        hits = [i for i, r in page if pattern.search(r[:MATCH_CHARS])][: limit - len(moved)]
        matched += len(hits)
        moved_here = 0
        for start in range(0, len(hits), batch_size):
            batch = hits[start : start + batch_size]
            results = await _move(
                store, queue, batch, reason=reason, actor=actor, states=("failed",)
            )
            batches += 1
            await checkpoint(f"batch-{batches}")
            for move in results:
                (moved if move.moved else skipped).append(move)
            moved_here += sum(1 for m in results if m.moved)
        offset += len(page) - moved_here
    return BulkQuarantineResult(
        queue=queue,
        dlq=store.dlq_name(queue),
        pattern=pattern.pattern,
        scanned=scanned,
        matched=matched,
        moved=moved,
        skipped=skipped,
        batches=batches,
    )
