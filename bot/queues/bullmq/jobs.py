"""One BullMQ job as it is now, for `job show`: its hash and which state holds it.

npm bullmq's `getState` asks each state's key in turn; here the sorted sets are asked with
ZSCORE (O(log n)) and the lists with LPOS bounded by MAXLEN, all in one pipeline: a job
deeper than the bound in a long wait list is reported as `waiting`, which is the only list
it can then be in besides `paused` (and the queue's paused flag tells those apart).

The same pipeline reads the rest of what a person judging the job needs, each read bounded:
the newest LOG_LINES of its logs (`<queue>:<id>:logs`, the list npm bullmq's `job.log()` /
`Queue.addJobLog` RPUSHes to) and their count, and for a flow parent the counts of its
children in each of the four places npm bullmq keeps them plus the first CHILD_SAMPLE of
each (SRANDMEMBER / HRANDFIELD / ZRANGE with a count: O(count), never the whole set). A
flow child names its parent in its own hash (`parentKey`). One round trip in all.
"""

from __future__ import annotations

from bot.errors import NotFound
from bot.queues.bullmq.dlq import _int, _json
from bot.queues.bullmq.store import QueueStore
from bot.queues.keys import QueueRef
from bot.queues.models import JobChildren, JobDetail

LIST_POSITION_BOUND = 1_000
"""Entries of each list LPOS compares at most (the 10 ms rule at a million jobs)."""

LOG_LINES = 50
"""The newest log lines `job show` reads (LRANGE -50 -1); the count says how many in all."""
CHILD_SAMPLE = 5
"""Children keys read per kind for a flow parent; the counts are exact."""

SORTED_STATES = ("completed", "failed", "delayed", "prioritized", "waiting-children")
LIST_STATES = (("active", "active"), ("wait", "waiting"), ("paused", "paused"))


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _listed(reply: object) -> list[object]:
    return list(reply) if isinstance(reply, list | set | tuple) else []


def _children(counts: list[int], samples: list[object]) -> JobChildren | None:
    """The children record, or None for a job that is no flow parent (all four empty)."""
    if not any(counts):
        return None
    pending, processed, ignored_pairs, failed = (_listed(s) for s in samples)
    return JobChildren(
        pending=counts[0],
        processed=counts[1],
        ignored=counts[2],
        failed=counts[3],
        pending_keys=sorted(_text(k) for k in pending),
        processed_keys=sorted(_text(k) for k in processed),
        ignored_reasons={
            _text(k): _text(v)
            for k, v in zip(ignored_pairs[0::2], ignored_pairs[1::2], strict=True)
        },
        failed_keys=[_text(k) for k in failed],
    )


async def job_detail(store: QueueStore, queue: QueueRef, job_id: str) -> JobDetail:
    """The job as it is now, in one pipeline of bounded reads (see the module's doc)."""
    key = queue.job(job_id)
    pipe = store.redis.pipeline(transaction=False)
    pipe.hgetall(key)
    for state in SORTED_STATES:
        pipe.zscore(queue.key(state), job_id)
    for list_key, _ in LIST_STATES:
        pipe.lpos(queue.key(list_key), job_id, maxlen=LIST_POSITION_BOUND)
    pipe.hexists(queue.key("meta"), "paused")
    pipe.lrange(f"{key}:logs", -LOG_LINES, -1)
    pipe.llen(f"{key}:logs")
    pipe.scard(f"{key}:dependencies")
    pipe.hlen(f"{key}:processed")
    pipe.hlen(f"{key}:failed")
    pipe.zcard(f"{key}:unsuccessful")
    pipe.srandmember(f"{key}:dependencies", CHILD_SAMPLE)
    pipe.hrandfield(f"{key}:processed", CHILD_SAMPLE)
    pipe.hrandfield(f"{key}:failed", CHILD_SAMPLE, withvalues=True)
    pipe.zrange(f"{key}:unsuccessful", 0, CHILD_SAMPLE - 1)
    replies = await pipe.execute()
    fields: dict[str, str] = replies[0]
    if not fields:
        raise NotFound(f"job {job_id} is not in '{queue.shown}'")
    held = [s for s, score in zip(SORTED_STATES, replies[1:6], strict=True) if score is not None]
    held += [
        name for (_, name), at in zip(LIST_STATES, replies[6:9], strict=True) if at is not None
    ]
    state = held[0] if held else ("paused" if replies[9] else "waiting")
    logs, logs_total = [_text(line) for line in replies[10]], int(replies[11])
    children = _children([int(n) for n in replies[12:16]], replies[16:20])
    stack = _json(fields.get("stacktrace"), [])
    opts = _json(fields.get("opts"), {})
    original = fields.get("qo.originalData")
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
        # npm bullmq's Job.moveToFailed pushes each attempt's stack (and keeps the last
        # stackTraceLimit): the newest is last in the hash; the record holds newest first.
        stacktrace=[str(s) for s in reversed(stack)] if isinstance(stack, list) else [str(stack)],
        created_ms=_int(fields.get("timestamp")),
        processed_ms=_int(fields.get("processedOn")),
        finished_ms=_int(fields.get("finishedOn")),
        progress=_json(fields.get("progress"), None),
        return_value=_json(fields.get("returnvalue"), None),
        attempts_started=_int(fields.get("ats")),
        delay_ms=_int(fields.get("delay")),
        priority=_int(fields.get("priority")),
        processed_by=fields.get("pb") or None,
        logs=logs,
        logs_total=logs_total,
        parent_key=fields.get("parentKey") or None,
        children=children,
        original_data=_json(original, None) if original is not None else None,
    )
