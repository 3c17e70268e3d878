"""`snapshot`: counts, age of the oldest waiting job, top names and failure reasons, DLQ depth."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from bot.queues.bullmq.slots import is_cluster_client, per_slot
from bot.queues.bullmq.store import QueueStore
from bot.queues.keys import COUNT_STATES, QueueRef
from bot.queues.models import QueueSnapshot, Tally

# A page, as a dashboard shows one: the views show the top 5 names and reasons of these, and
# reading more would cost Redis time no view shows (issue 9: no heavier than a dashboard).
WAITING_SAMPLE = 10
FAILED_SAMPLE = 10
TOP = 5


def _tally(values: Sequence[str], top: int = TOP) -> list[Tally]:
    return [Tally(key=key, count=n) for key, n in Counter(values).most_common(top)]


def _reason_headline(reason: str) -> str:
    """Group failures by their first line: stack traces and ids below it would split groups."""
    return reason.strip().splitlines()[0][:200] if reason.strip() else "(no reason)"


async def snapshot(
    store: QueueStore,
    queues: Sequence[QueueRef],
    *,
    now_ms: int | None = None,
    waiting_sample: int = WAITING_SAMPLE,
    failed_sample: int = FAILED_SAMPLE,
) -> list[QueueSnapshot]:
    """One Redis command for up to 40 queues, whatever their backlog (see lua/snapshot.lua);
    on Redis Cluster one per slot that holds queues (bot/queues/bullmq/slots.py), sent together."""
    if not queues:
        return []

    async def call(group: Sequence[QueueRef]) -> list[Any]:
        keys: list[str] = []
        for queue in group:
            keys += [queue.base, store.dlq(queue).base]
        answer: list[Any] = await store.scripts.snapshot(
            keys=keys, args=[waiting_sample, failed_sample]
        )
        return answer

    raw = await per_slot(queues, call, cluster=is_cluster_client(store.redis))
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    result = []
    for queue, (counts, paused, oldest, names, reasons, dlq_depth) in zip(queues, raw, strict=True):
        oldest_since = int(oldest)
        result.append(
            QueueSnapshot(
                name=queue.name,
                prefix=queue.prefix,
                label=queue.shown,
                counts={state: int(n) for state, n in zip(COUNT_STATES, counts, strict=True)},
                is_paused=bool(int(paused)),
                oldest_waiting_age_ms=max(now - oldest_since, 0) if oldest_since >= 0 else None,
                top_waiting_names=_tally(names),
                top_failure_reasons=_tally([_reason_headline(r) for r in reasons]),
                dlq_depth=int(dlq_depth),
                waiting_sample=waiting_sample,
                failed_sample=failed_sample,
            )
        )
    return result
