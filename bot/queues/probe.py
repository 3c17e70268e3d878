"""`probe`: which queues a drain should visit now, for every queue in one Redis command.

The scheduler's tick uses the same script with its options on (`TickOptions`): a depth
sample per queue and counts of other due work (pending alerts, channels to archive), so a
tick stays one command however much it learns.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.queues.keys import COUNT_STATES, QueueRef
from bot.queues.models import ProbeResult, QueueWork
from bot.queues.store import QueueStore

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


async def probe(
    store: QueueStore,
    queues: Sequence[QueueRef],
    *,
    now_ms: int | None = None,
    options: TickOptions | None = None,
) -> ProbeResult:
    """Exactly one EVALSHA for all queues (see lua/probe.lua)."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    opts = options or TickOptions()
    if not queues and not opts.extras:
        return ProbeResult(queues=[], extras=[])
    keys: list[str] = []
    for queue in queues:
        keys += [queue.base, store.dlq(queue).base]
    args: list[str | int] = [
        due_score(now),
        ACTIVE_SAMPLE,
        opts.keep_samples,
        opts.sample_key_base,
        now,
    ]
    for extra in opts.extras:
        args += [extra.kind, extra.key, *extra.args]
    raw: list[Any] = await store.scripts.probe(keys=keys, args=args)
    *per_queue, extras = raw
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
            )
            for queue, row in zip(queues, per_queue, strict=True)
        ],
        extras=[x if isinstance(x, list) else int(x) for x in extras],
    )
