"""The DLQ of queue Q is the BullMQ queue `Q-dlq`: list, show, and replay back into Q."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

from bot.errors import NotFound, OperationFailed, Refused, UsageError
from bot.queues.bullmq.batching import CallSizer, ScriptCall, run_round
from bot.queues.bullmq.control import is_paused
from bot.queues.bullmq.store import Checkpoint, QueueStore, no_checkpoint
from bot.queues.keys import QueueRef
from bot.queues.models import (
    DataChange,
    DataEdit,
    DlqEntry,
    DlqListing,
    ReplayedJob,
    ReplayResult,
)

# Options a replay does not put back, and why: the job runs now (delay, timestamp), under
# its original id, outside any schedule or flow (repeat*, parent*), and must not be
# swallowed by a deduplication key that still points at the original (deduplication).
DROPPED_ON_REPLAY = (
    "delay",
    "timestamp",
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
    from bullmq.job import optsFromJSON  # here: only the commands that read a DLQ need it

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


TIED_MAX = 200
"""The largest group of entries sharing the boundary's time that is read to order it, as
lua/replay.lua does (past it, the sorted set's own order: time, then the id's bytes)."""


def dlq_order(job_id: str, score: float) -> tuple[float, int, int, str, str]:
    """The DLQ's order, oldest first: its time (the score), then the id, numeric ids as
    numbers (2 before 14), then the others. lua/replay.lua takes entries in this order."""
    if job_id.isascii() and job_id.isdigit():
        digits = job_id.lstrip("0") or "0"
        return (score, 0, len(digits), digits, job_id)
    return (score, 1, 0, "", job_id)


async def _ordered_ids(store: QueueStore, key: str, limit: int, *, oldest_first: bool) -> list[str]:
    """The first `limit` ids in the DLQ's order (or its reverse): one range read, and, when
    the last one read ties with at most TIED_MAX others, one more for them (a bulk
    quarantine's entries share a time) — the same rule as lua/replay.lua, so a replay's
    preview lists what the replay takes."""
    read = store.redis.zrange if oldest_first else store.redis.zrevrange
    rows: list[Any] = await read(key, 0, limit - 1, withscores=True)
    page = [(str(row[0]), float(row[1])) for row in rows]
    if len(page) == limit and page:
        last = page[-1][1]
        if await store.redis.zcount(key, last, last) > TIED_MAX:
            return [job_id for job_id, _ in page]
        tied = await store.redis.zrangebyscore(key, last, last)
        page = [row for row in page if row[1] != last] + [(str(i), last) for i in tied]
    page.sort(key=lambda row: dlq_order(*row), reverse=not oldest_first)
    return [job_id for job_id, _ in page[:limit]]


async def dlq_list(
    store: QueueStore, queue: QueueRef, *, limit: int = 20, oldest_first: bool = False
) -> DlqListing:
    """The newest (or oldest: the next to replay) `limit` quarantined jobs in the DLQ's
    order (dlq_order): a range read or two and one pipelined HGETALL batch."""
    dlq = store.dlq(queue)
    ids = await _ordered_ids(store, dlq.key("failed"), limit, oldest_first=oldest_first)
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.zcard(dlq.key("failed"))
        for job_id in ids:
            pipe.hgetall(dlq.job(job_id))
        depth, *hashes = await pipe.execute()
    entries = [entry_from_hash(i, h) for i, h in zip(ids, hashes, strict=True) if h]
    return DlqListing(queue=queue.shown, dlq=dlq.shown, depth=int(depth), entries=entries)


async def dlq_show(store: QueueStore, queue: QueueRef, job_id: str) -> DlqEntry | None:
    raw = await store.redis.hgetall(store.dlq(queue).job(job_id))
    fields = {str(k): str(v) for k, v in raw.items()}
    return entry_from_hash(job_id, fields) if fields else None


REPLAY_BATCH = 40
"""Jobs per replay script call to start with (about 15 Redis commands each); then as
measured (batching.CallSizer), at most REPLAY_BATCH_MAX. A replay of 1,000 is one round,
all of it at this size: at 100 a call took 8-9 ms at a million jobs, too near the 10 ms
bound; 40 keeps a call near the sizer's 3 ms target and the round still one round trip."""
REPLAY_BATCH_MAX = 1000
REPLAY_ROUND = 1000
"""Jobs a replay round covers: its calls go in one pipeline, one round trip."""

# npm bullmq stores these options under short names (optsEncodeMap in its utils).
_SHORT_NAMES = {
    "deduplication": "de",
    "debounce": "de",
    "failParentOnFailure": "fpof",
    "continueParentOnFailure": "cpof",
    "ignoreDependencyOnFailure": "idof",
    "removeDependencyOnFailure": "rdof",
}
_DROPPED_KEYS = ",".join(
    sorted({*DROPPED_ON_REPLAY, *(_SHORT_NAMES[k] for k in DROPPED_ON_REPLAY if k in _SHORT_NAMES)})
)


def replay_keys(src: QueueRef, dlq: QueueRef) -> list[str]:
    """The KEYS replay.lua and replay_one.lua take, in the order their shared
    lua/includes/replay_job.lua reads them."""
    return [
        dlq.key("failed"),
        dlq.key("meta"),
        dlq.key("events"),
        *(src.key(s) for s in ("wait", "paused", "meta", "active", "prioritized", "marker")),
        src.key("pc"),
        src.key("events"),
    ]


def _left(queue: QueueRef, dlq: str, job_id: str, name: str, outcome: str) -> ReplayedJob:
    if outcome == "taken-same":
        problem = (
            f"'{queue.shown}' already has job {job_id} with the same name and data (replayed or "
            "re-added earlier?); left in the DLQ so it does not run twice"
        )
    elif outcome == "taken-other":
        problem = f"'{queue.shown}' already has a different job with id {job_id}; left in the DLQ"
    elif outcome == "no-hash":
        problem = f"'{dlq}' lists job {job_id} but holds no data for it; left as it is"
    else:
        problem = f"unexpected outcome {outcome}"
    return ReplayedJob(job_id=job_id, name=name, replayed=False, problem=problem)


async def dlq_replay(
    store: QueueStore,
    queue: QueueRef,
    *,
    count: int,
    batch_size: int | None = None,
    round_size: int = REPLAY_ROUND,
    checkpoint: Checkpoint = no_checkpoint,
) -> ReplayResult:
    """Canary re-enqueue: the `count` oldest quarantined jobs go back into `queue`.

    Each call of lua/replay.lua moves its jobs from the DLQ into the queue one by one,
    atomically, and picks the oldest entries itself: exactly once across concurrent
    replays and crashes (a crash leaves each job in the DLQ or in the queue, never both,
    never neither). A round sends the calls for `round_size` jobs in one pipeline; the
    jobs per call follow the measured time (batching.CallSizer; `batch_size` fixes it).
    The result lists only what this run moved.
    """
    if await is_paused(store, queue):
        raise Refused(f"'{queue.shown}' is paused; resume it first, replayed jobs would not run")
    await checkpoint("checked")
    src, dlq = queue, store.dlq(queue)
    keys = replay_keys(src, dlq)
    sizer = CallSizer(initial=REPLAY_BATCH, low=10, high=REPLAY_BATCH_MAX, fixed=batch_size)
    done: list[ReplayedJob] = []
    left: dict[str, ReplayedJob] = {}
    rounds = 0
    while len(done) + len(left) < count:
        want = min(round_size, count - len(done) - len(left))
        size = max(1, sizer.size)
        sizes = [min(size, want - start) for start in range(0, want, size)]
        # Entries this run left stay at the oldest end of the DLQ: pass over them. A call
        # later in the round may look at one a call before it just left: harmless.
        now = int(time.time() * 1000)
        head: list[str | int] = [src.base, dlq.base, now, len(left)]
        calls = [ScriptCall(store.scripts.replay, keys, [*head, n, _DROPPED_KEYS]) for n in sizes]
        sizer.start()
        answers = await run_round(store.redis, calls)
        looked = 0
        for flat in answers:
            if isinstance(flat, Exception):
                continue
            looked += len(flat) // 3
            for job_id, outcome, name in zip(flat[0::3], flat[1::3], flat[2::3], strict=True):
                if outcome == "replayed":
                    done.append(ReplayedJob(job_id=job_id, name=name, replayed=True))
                elif job_id not in left:
                    left[job_id] = _left(queue, dlq.shown, job_id, name, outcome)
        sizer.done(looked, len(calls))
        for flat in answers:
            if isinstance(flat, Exception):
                raise flat
        rounds += 1
        await checkpoint(f"round-{rounds}")
        if any(len(flat) // 3 < n for flat, n in zip(answers, sizes, strict=True)):
            break  # a call found fewer than it asked for: the DLQ is empty past our leftovers
    return ReplayResult(
        queue=queue.shown,
        dlq=dlq.shown,
        requested=count,
        replayed=done,
        left=list(left.values()),
        dropped_options=list(DROPPED_ON_REPLAY),
    )


# --- one job by id, its data edited or as it is (issue 14) ---

EDIT_DATA_MAX = 1_000_000
"""The largest data (JSON characters) an edited replay reads and rewrites: the edit runs
off the event loop, and the new data goes to Redis in one script call."""
DIFF_MAX = 50
"""Changed paths a replay's diff lists at most."""
DIFF_VALUE_CHARS = 200
"""A before/after value in the diff is cut here."""
_MISSING = object()


def _value_text(value: object) -> str | None:
    if value is _MISSING:
        return None
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= DIFF_VALUE_CHARS else text[: DIFF_VALUE_CHARS - 1] + "…"


def merge_patch(target: object, patch: object) -> object:
    """RFC 7386 JSON merge patch: an object patch merges key by key (null removes a key),
    anything else replaces the target. `target` is a fresh parse: changed in place."""
    if not isinstance(patch, dict):
        return patch
    doc: dict[str, object] = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = merge_patch(doc.get(key), value)
    return doc


def _json_kind(value: object) -> str:
    """A value's kind in JSON's words, for a message."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else "value"


def set_path(doc: object, keys: list[str], value: object, *, job_id: str) -> object:
    """`doc` with the value at `keys` set: missing objects on the way are created, a list
    is indexed by a decimal key (an existing item). One clear line when the data's shape
    does not allow it (a number where the path needs an object)."""
    if not keys:
        return value
    node = doc
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = ".".join(keys[: depth + 1])
        if isinstance(node, dict):
            if last:
                node[key] = value
            else:
                if not isinstance(node.get(key), dict | list):
                    if key in node and node[key] is not None:
                        kind = _json_kind(node[key])
                        raise UsageError(
                            f"job {job_id}'s data has a {kind} at '{where}'; --set "
                            f"{'.'.join(keys)} needs an object there"
                        )
                    node[key] = {}
                node = node[key]
        elif isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise UsageError(
                    f"job {job_id}'s data has a list of {len(node)} at "
                    f"'{'.'.join(keys[:depth]) or '(the data)'}'; '{key}' is not one of its "
                    "indexes"
                )
            if last:
                node[int(key)] = value
            else:
                if not isinstance(node[int(key)], dict | list):
                    node[int(key)] = {}
                node = node[int(key)]
        else:
            raise UsageError(
                f"job {job_id}'s data is not an object at "
                f"'{'.'.join(keys[:depth]) or '(the data)'}'; --set cannot go inside it"
            )
    return doc


def data_changes(before: object, after: object, path: str = "") -> list[DataChange]:
    """The paths whose value differs, objects compared key by key, anything else (lists,
    numbers, strings) as a whole; at most DIFF_MAX. Descends only into objects that differ,
    so its depth is the edit's, not the data's."""
    out: list[DataChange] = []

    def walk(a: object, b: object, at: str) -> None:
        if len(out) >= DIFF_MAX or a == b:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in [*a, *(k for k in b if k not in a)]:
                walk(a.get(key, _MISSING), b.get(key, _MISSING), f"{at}.{key}" if at else key)
            return
        out.append(DataChange(path=at or "(the data)", before=_value_text(a), after=_value_text(b)))

    walk(before, after, path)
    return out


def edited_data(raw: str, edit: DataEdit, job_id: str) -> tuple[str, list[DataChange]]:
    """The new data (as npm bullmq stores it: compact JSON) and what changed. CPU-bound on
    a large payload: run off the event loop (asyncio.to_thread)."""
    if len(raw) > EDIT_DATA_MAX:
        raise Refused(
            f"job {job_id}'s data is {len(raw):,} characters; an edited replay takes data up to "
            f"{EDIT_DATA_MAX:,} (replay it as it is, or re-add it edited with `add`)"
        )
    try:
        before = json.loads(raw)
        doc = json.loads(raw)
    except ValueError:
        raise Refused(f"job {job_id}'s data is not JSON; it cannot be edited") from None
    except RecursionError:
        raise Refused(f"job {job_id}'s data is nested too deep to edit") from None
    if edit.patch is not None:
        doc = merge_patch(doc, edit.patch)
    for keys, value in edit.sets:
        doc = set_path(doc, keys, value, job_id=job_id)
    changes = data_changes(before, doc)
    if not changes:
        raise UsageError(
            f"the edit changes nothing in job {job_id}'s data; without --set/--patch it is "
            "replayed as it is"
        )
    new = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    if len(new) > EDIT_DATA_MAX:
        raise Refused(f"the edited data would be {len(new):,} characters, over {EDIT_DATA_MAX:,}")
    return new, changes


async def replay_one_preview(
    store: QueueStore, queue: QueueRef, job_id: str, edit: DataEdit
) -> tuple[DlqEntry, list[DataChange]]:
    """What `dlq replay QUEUE ID` would do: the entry, and the diff an edit makes."""
    entry = await dlq_show(store, queue, job_id)
    if entry is None:
        raise NotFound(f"job {job_id} is not in '{store.dlq(queue).shown}'")
    if edit.empty:
        return entry, []
    raw = await store.redis.hget(store.dlq(queue).job(job_id), "data")
    _, changes = await asyncio.to_thread(edited_data, str(raw or "{}"), edit, job_id)
    return entry, changes


async def replay_one(
    store: QueueStore,
    queue: QueueRef,
    job_id: str,
    edit: DataEdit,
    *,
    actor: str,
    checkpoint: Checkpoint = no_checkpoint,
) -> tuple[ReplayResult, list[DataChange]]:
    """Put one quarantined job back into `queue`, its data edited (`edit`) or as it is.

    Reads the DLQ copy's data, computes the edit off the event loop, then lua/replay_one.lua
    checks the data is still what the edit was computed from and moves the job with its new
    data in one step (the original kept on the job as `qo.originalData`): exactly once
    across concurrent replays and crashes, the job wholly in the DLQ or wholly back.
    """
    if await is_paused(store, queue):
        raise Refused(f"'{queue.shown}' is paused; resume it first, replayed jobs would not run")
    src, dlq = queue, store.dlq(queue)
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.zscore(dlq.key("failed"), job_id)
        pipe.hget(dlq.job(job_id), "data")
        score, raw = await pipe.execute()
    if score is None:
        raise NotFound(f"job {job_id} is not in '{dlq.shown}'")
    changes: list[DataChange] = []
    new, before = "", ""
    if not edit.empty:
        before = str(raw if raw is not None else "{}")
        new, changes = await asyncio.to_thread(edited_data, before, edit, job_id)
    await checkpoint("read")
    keys = replay_keys(src, dlq)
    now = int(time.time() * 1000)
    flag = "0" if edit.empty else "1"
    args: list[str | int] = [src.base, dlq.base, now, job_id, before, _DROPPED_KEYS, new, flag]
    outcome, name = await store.scripts.replay_one(keys=keys, args=[*args, actor])
    await checkpoint("moved")
    if outcome == "not-in-dlq":
        raise NotFound(f"job {job_id} is no longer in '{dlq.shown}' (replayed meanwhile?)")
    if outcome == "changed":
        raise OperationFailed(
            f"job {job_id}'s data in '{dlq.shown}' changed while the edit was made; run it again"
        )
    moved = outcome == "replayed"
    result = ReplayResult(
        queue=queue.shown,
        dlq=dlq.shown,
        requested=1,
        replayed=[ReplayedJob(job_id=job_id, name=name, replayed=True)] if moved else [],
        left=[] if moved else [_left(queue, dlq.shown, job_id, name, outcome)],
        dropped_options=list(DROPPED_ON_REPLAY),
    )
    return result, changes
