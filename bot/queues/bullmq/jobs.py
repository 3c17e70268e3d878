"""One BullMQ job as it is now, for `job show`: its hash and which state holds it.

npm bullmq's `getState` asks each state's key in turn; here the sorted sets are asked with
ZSCORE (O(log n)) and the lists with LPOS bounded by MAXLEN, all in one pipeline: a job
deeper than the bound in a long wait list is reported as `waiting`, which is the only list
it can then be in besides `paused` (and the queue's paused flag tells those apart).
"""

from __future__ import annotations

from bot.errors import NotFound
from bot.queues.bullmq.dlq import _int, _json
from bot.queues.bullmq.store import QueueStore
from bot.queues.keys import QueueRef
from bot.queues.models import JobDetail

LIST_POSITION_BOUND = 1_000
"""Entries of each list LPOS compares at most (the 10 ms rule at a million jobs)."""

SORTED_STATES = ("completed", "failed", "delayed", "prioritized", "waiting-children")
LIST_STATES = (("active", "active"), ("wait", "waiting"), ("paused", "paused"))


async def job_detail(store: QueueStore, queue: QueueRef, job_id: str) -> JobDetail:
    pipe = store.redis.pipeline(transaction=False)
    pipe.hgetall(queue.job(job_id))
    for state in SORTED_STATES:
        pipe.zscore(queue.key(state), job_id)
    for key, _ in LIST_STATES:
        pipe.lpos(queue.key(key), job_id, maxlen=LIST_POSITION_BOUND)
    pipe.hexists(queue.key("meta"), "paused")
    replies = await pipe.execute()
    fields: dict[str, str] = replies[0]
    if not fields:
        raise NotFound(f"job {job_id} is not in '{queue.shown}'")
    held = [s for s, score in zip(SORTED_STATES, replies[1:6], strict=True) if score is not None]
    held += [
        name for (_, name), at in zip(LIST_STATES, replies[6:9], strict=True) if at is not None
    ]
    state = held[0] if held else ("paused" if replies[9] else "waiting")
    stack = _json(fields.get("stacktrace"), [])
    opts = _json(fields.get("opts"), {})
    return JobDetail(
        name=queue.name,
        prefix=queue.prefix,
        label=queue.shown,
        job_id=job_id,
        state=state,
        job_name=fields.get("name", ""),
        data=_json(fields.get("data"), {}),
        opts=opts if isinstance(opts, dict) else {},
        attempts=_int(fields.get("atm")) or 0,
        failed_reason=fields.get("failedReason") or None,
        # npm bullmq appends each attempt's stack: the newest is last; shown newest first.
        stacktrace=[str(s) for s in reversed(stack)] if isinstance(stack, list) else [str(stack)],
        created_ms=_int(fields.get("timestamp")),
        processed_ms=_int(fields.get("processedOn")),
        finished_ms=_int(fields.get("finishedOn")),
    )
