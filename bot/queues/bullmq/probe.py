"""`probe`: which queues a drain should visit now, for every queue in one Redis command.

The scheduler's tick uses the same script with its options on (`TickOptions`): a depth
sample per queue and counts of other due work (pending alerts, channels to archive), so a
tick stays one command however much it learns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from redis.exceptions import NoScriptError

from bot.queues.bullmq.slots import group_for_calls, is_cluster_client, slot_of
from bot.queues.bullmq.store import QueueStore
from bot.queues.keys import COUNT_STATES, QueueRef
from bot.queues.models import ProbeResult, QueueWork

ACTIVE_SAMPLE = 100


def due_score(now_ms: int) -> int:
    """BullMQ v5 scores a delayed job `timestamp * 0x1000 + counter`: everything at or
    under this score is due at `now_ms`."""
    return now_ms * 0x1000 + 0xFFF


@dataclass(frozen=True)
class Extra:
    """Something else the tick should learn in the same command (lua/probe.lua lists the
    kinds): "xpending" (key = stream, args = group), "zdue" (key = zset, args = max score
    or "now"), "cron" (key = cron hash, args = lease key, owner, ttl ms, default mode)."""

    kind: str
    key: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class TickOptions:
    keep_samples: int = 0
    sample_key_base: str = ""
    extras: Sequence[Extra] = field(default_factory=tuple)


def _keys(store: QueueStore, queues: Sequence[QueueRef]) -> list[str]:
    keys: list[str] = []
    for queue in queues:
        keys += [queue.base, store.dlq(queue).base]
    return keys


def _extra_args(extras: Sequence[Extra]) -> list[str | int]:
    args: list[str | int] = []
    for extra in extras:
        args += [extra.kind, extra.key, *extra.args]
    return args


def _cluster_carrier(
    queues: Sequence[QueueRef], groups: list[list[int]], opts: TickOptions
) -> int | None:
    """On Redis Cluster, the call whose slot is the extras' (queueops' own keys, all under
    one hash tag: the script touches them in ARGV, not KEYS), or None when no call's queues
    share it. Checks what the script would otherwise fail on (or write to the wrong slot):
    the extras in one slot, each depth sample key in its queue's slot."""
    slots = [slot_of(queues[g[0]].base) for g in groups]
    if opts.keep_samples:
        # The sample key is `<sample base><prefix>:<name>` (lua/probe.lua): it must hash
        # with the queue's keys, which samples.sample_key_base's brace-free base ensures.
        for group, slot in zip(groups, slots, strict=True):
            for i in group:
                sample_key = f"{opts.sample_key_base}{queues[i].full}"
                assert slot_of(sample_key) == slot, f"{sample_key} is not in slot {slot}"
    if not opts.extras:
        return None
    extras_slot = slot_of(opts.extras[0].key)
    # The cron extra also touches its lease key (args[0]): the same tag, the same slot.
    touched = [
        k for e in opts.extras for k in (e.key, *e.args[:1]) if e.kind == "cron" or k == e.key
    ]
    spread = [k for k in touched if slot_of(k) != extras_slot]
    assert not spread, f"probe extras span slots: {spread} vs {opts.extras[0].key}"
    return slots.index(extras_slot) if extras_slot in slots else None


async def _probe_calls(
    store: QueueStore, queues: Sequence[QueueRef], head: list[str | int], opts: TickOptions
) -> tuple[list[Any], list[Any]]:
    """One EVALSHA per QUEUES_PER_CALL queues (on Redis Cluster, per slot too), sent
    together; the extras ride in one of them (the first; on a cluster the first in their
    slot), else in a call of their own. Returns the rows in the order of `queues`, and
    the extras' answers."""
    cluster = is_cluster_client(store.redis)
    groups = group_for_calls(queues, cluster=cluster)
    carrier = _cluster_carrier(queues, groups, opts) if cluster else (0 if groups else None)
    extras_args = _extra_args(opts.extras)

    async def call(group: list[int], with_extras: bool) -> list[Any]:
        answer: list[Any] = await store.scripts.probe(
            keys=_keys(store, [queues[i] for i in group]),
            args=head + extras_args if with_extras else head,
        )
        return answer

    calls = [call(g, at == carrier) for at, g in enumerate(groups)]
    alone = bool(opts.extras) and carrier is None
    if alone:
        calls.append(
            _extras_only(store, head + extras_args, opts.extras[0].key)
            if cluster
            else call([], True)
        )
    answers = await asyncio.gather(*calls)
    per_queue: list[Any] = [None] * len(queues)
    extras: list[Any] = []
    for at, (group, answer) in enumerate(zip(groups, answers, strict=False)):
        *rows, group_extras = answer
        for i, row in zip(group, rows, strict=True):
            per_queue[i] = row
        if at == carrier:
            extras = group_extras
    if alone:
        extras = answers[-1][-1]
    return per_queue, extras


async def _extras_only(store: QueueStore, args: list[str | int], routing_key: str) -> list[Any]:
    """The probe with no queues (no KEYS): redis-py would send a key-less EVALSHA to a
    random node, so it goes to the node holding `routing_key`'s slot."""
    cluster = cast(Any, store.redis)
    script = store.scripts.probe
    node = cluster.get_node_from_key(routing_key)
    try:
        answer: list[Any] = await cluster.execute_command(
            "EVALSHA", script.sha, 0, *args, target_nodes=node
        )
    except NoScriptError:
        await store.redis.script_load(script.script)  # on every primary (redis-py)
        answer = await cluster.execute_command("EVALSHA", script.sha, 0, *args, target_nodes=node)
    return answer


async def probe(
    store: QueueStore,
    queues: Sequence[QueueRef],
    *,
    now_ms: int | None = None,
    options: TickOptions | None = None,
) -> ProbeResult:
    """One EVALSHA for up to 40 queues (see lua/probe.lua; bot/queues/bullmq/slots.py says why no
    more); on Redis Cluster one per slot that holds queues (`_probe_calls`)."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    opts = options or TickOptions()
    if not queues and not opts.extras:
        return ProbeResult(queues=[], extras=[])
    head: list[str | int] = [
        due_score(now),
        ACTIVE_SAMPLE,
        opts.keep_samples,
        opts.sample_key_base,
        now,
    ]
    per_queue, extras = await _probe_calls(store, queues, head, opts)
    return ProbeResult(
        at_ms=now,
        queues=[
            QueueWork(
                name=queue.name,
                prefix=queue.prefix,
                label=queue.shown,
                is_paused=bool(int(row[0])),
                ready=int(row[1]),
                due_delayed=int(row[2]),
                stalled=int(row[3]),
                failed=int(row[4]),
                completed=int(row[5]),
                dlq_depth=int(row[6]),
                oldest_runnable_since_ms=int(row[7]) if int(row[7]) >= 0 else None,
                counts={s: int(n) for s, n in zip(COUNT_STATES, row[8], strict=True)},
                metrics_completed=int(row[9]) if len(row) > 9 and int(row[9]) >= 0 else None,
            )
            for queue, row in zip(queues, per_queue, strict=True)
        ],
        extras=[x if isinstance(x, list) else int(x) for x in extras],
    )
