"""The DLQ of queue Q is the BullMQ queue `Q-dlq`: list, show, and replay back into Q."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bullmq import Job
from bullmq.job import optsFromJSON

from bot.errors import Refused
from bot.queues.control import is_paused
from bot.queues.models import DlqEntry, DlqListing, ReplayedJob, ReplayResult
from bot.queues.store import Checkpoint, QueueStore, no_checkpoint

# Options a replay does not put back, and why: the job runs now (delay, timestamp), under
# its original id (jobId), outside any schedule or flow (repeat*, parent*), and must not be
# swallowed by a deduplication key that still points at the original (deduplication).
DROPPED_ON_REPLAY = (
    "delay",
    "timestamp",
    "jobId",
    "repeat",
    "repeatJobKey",
    "prevMillis",
    "parent",
    "deduplication",
    "debounce",
    "failParentOnFailure",
    "continueParentOnFailure",
    "ignoreDependencyOnFailure",
    "removeDependencyOnFailure",
)


def _json(raw: str | None, fallback: Any) -> Any:
    if raw is None:
        return fallback
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _int(raw: str | None) -> int | None:
    try:
        return int(float(raw)) if raw not in (None, "") else None
    except ValueError:
        return None


def entry_from_hash(job_id: str, fields: Mapping[str, str]) -> DlqEntry:
    """Read a DLQ job hash as npm bullmq stored it, plus our qo.* fields."""
    opts = _json(fields.get("opts"), {})
    stack = _json(fields.get("stacktrace"), [])
    return DlqEntry(
        job_id=job_id,
        name=fields.get("name", ""),
        data=_json(fields.get("data"), {}),
        opts=optsFromJSON(opts) if isinstance(opts, dict) else {},
        attempts_made=_int(fields.get("atm")) or 0,
        failed_reason=fields.get("failedReason"),
        original_failed_reason=fields.get("qo.failedReason") or None,
        stacktrace=[str(s) for s in stack] if isinstance(stack, list) else [str(stack)],
        timestamp=_int(fields.get("timestamp")),
        processed_on=_int(fields.get("processedOn")),
        quarantined_at=_int(fields.get("qo.at")),
        quarantined_by=fields.get("qo.by"),
        quarantine_reason=fields.get("qo.reason"),
        from_state=fields.get("qo.from"),
        from_queue=fields.get("qo.queue"),
    )


async def dlq_list(
    store: QueueStore, queue: str, *, limit: int = 20, oldest_first: bool = False
) -> DlqListing:
    """The newest (or oldest: the next to replay) `limit` quarantined jobs: one range read
    and one pipelined HGETALL batch."""
    dlq = store.dlq_keys(queue)
    read = store.redis.zrange if oldest_first else store.redis.zrevrange
    ids = [str(i) for i in await read(dlq.key("failed"), 0, limit - 1)]
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.zcard(dlq.key("failed"))
        for job_id in ids:
            pipe.hgetall(dlq.job(job_id))
        depth, *hashes = await pipe.execute()
    entries = [entry_from_hash(i, h) for i, h in zip(ids, hashes, strict=True) if h]
    return DlqListing(queue=queue, dlq=dlq.name, depth=int(depth), entries=entries)


async def dlq_show(store: QueueStore, queue: str, job_id: str) -> DlqEntry | None:
    raw = await store.redis.hgetall(store.dlq_keys(queue).job(job_id))
    fields = {str(k): str(v) for k, v in raw.items()}
    return entry_from_hash(job_id, fields) if fields else None


def _same_payload(a: Any, b: Any) -> bool:
    return bool(a.name == b.name and a.data == b.data)


async def _replay_one(
    store: QueueStore, queue: str, job_id: str, checkpoint: Checkpoint
) -> ReplayedJob:
    dlq_queue = store.bullmq(store.dlq_name(queue))
    target = store.bullmq(queue)
    original = await Job.fromId(dlq_queue, job_id)
    await checkpoint("read")
    if original is None:
        return ReplayedJob(job_id=job_id, name="", replayed=False, problem="gone from the DLQ")
    existing = await Job.fromId(target, job_id)
    if existing is not None and not _same_payload(existing, original):
        return ReplayedJob(
            job_id=job_id,
            name=original.name,
            replayed=False,
            problem=f"'{queue}' already has a different job with id {job_id}; left in the DLQ",
        )
    if existing is None:
        opts = {k: v for k, v in original.opts.items() if k not in DROPPED_ON_REPLAY}
        opts["jobId"] = job_id
        # PyPI bullmq's add with an existing jobId returns that id and changes nothing, so a
        # replay that crashed after this line can simply run again.
        await target.add(original.name, original.data, opts)
    await checkpoint("added")
    src, dlq = store.keys(queue), store.dlq_keys(queue)
    await store.scripts.dlq_release(
        keys=[dlq.key("failed"), src.key("wait"), src.key("paused"), src.key("meta")],
        args=[src.base, dlq.base, job_id],
    )
    await checkpoint("released")
    return ReplayedJob(job_id=job_id, name=original.name, replayed=True)


async def dlq_replay(
    store: QueueStore, queue: str, *, count: int, checkpoint: Checkpoint = no_checkpoint
) -> ReplayResult:
    """Canary re-enqueue: the `count` oldest quarantined jobs go back into `queue`.

    Per job an ordered, idempotent sequence (read, add with the original id, release the
    DLQ copy): a crash leaves the job in the DLQ, or in both, never in neither.
    """
    if await is_paused(store, queue):
        raise Refused(f"'{queue}' is paused; resume it first, replayed jobs would not run")
    dlq = store.dlq_keys(queue)
    ids = [str(i) for i in await store.redis.zrange(dlq.key("failed"), 0, count - 1)]
    done: list[ReplayedJob] = []
    left: list[ReplayedJob] = []
    for job_id in ids:
        outcome = await _replay_one(store, queue, job_id, checkpoint)
        (done if outcome.replayed else left).append(outcome)
    return ReplayResult(
        queue=queue,
        dlq=dlq.name,
        requested=count,
        replayed=done,
        left=left,
        dropped_options=list(DROPPED_ON_REPLAY),
    )
