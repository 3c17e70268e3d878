"""`snapshot`: counts, age of the oldest waiting job, top names and failure reasons, DLQ depth."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from bot.queues.bullmq import throughput, workers
from bot.queues.bullmq.slots import is_cluster_client, per_slot
from bot.queues.bullmq.store import QueueStore
from bot.queues.keys import COUNT_STATES, QueueRef
from bot.queues.models import QueueSnapshot, Tally

# A page, as a dashboard shows one: the views show the top 5 names and reasons of these, and
# reading more would cost Redis time no view shows (issue 9: no heavier than a dashboard).
WAITING_SAMPLE = 10
FAILED_SAMPLE = 10
TOP = 5
SAMPLE_POINTS = 12
"""Depth samples a snapshot reads for a queue whose Workers record no metrics: the tick
writes one a DRAIN_EVERY, so at 5m these are the last hour, at 1m the last 12 minutes."""
SAMPLE_WINDOW_MS = 30 * 60_000
"""The samples a rate is derived from: the last half hour (2 or more of them)."""


def _tally(values: Sequence[str], top: int = TOP) -> list[Tally]:
    return [Tally(key=key, count=n) for key, n in Counter(values).most_common(top)]


def _reason_headline(reason: str) -> str:
    """Group failures by their first line: stack traces and ids below it would split groups."""
    return reason.strip().splitlines()[0][:200] if reason.strip() else "(no reason)"


def _points(raw: Sequence[Any]) -> list[tuple[int, int]]:
    """Depth samples ("ms:depth", newest first) as (ms, depth), oldest first."""
    points = []
    for entry in raw:
        at, _, depth = str(entry).partition(":")
        if at.isdigit() and depth.isdigit():
            points.append((int(at), int(depth)))
    return sorted(points)


async def snapshot(
    store: QueueStore,
    queues: Sequence[QueueRef],
    *,
    now_ms: int | None = None,
    waiting_sample: int = WAITING_SAMPLE,
    failed_sample: int = FAILED_SAMPLE,
    with_workers: bool = True,
    sample_key_base: str = "",
) -> list[QueueSnapshot]:
    """One Redis command for up to 40 queues, whatever their backlog (see lua/snapshot.lua);
    on Redis Cluster one per slot that holds queues (bot/queues/bullmq/slots.py), sent together.

    Then, when some queue holds jobs, one CLIENT LIST for every queue (workers.py; on a
    cluster one per node) for the `workers` counts: 2 commands for up to 40 queues. Every
    queue empty, the count is left out (None) and the snapshot stays 1 command (the idle
    cost budget.py and tests/test_redis_cost.py hold it to): no worker is needed where there
    is nothing to do, and `workers` lists them anyway. The metrics keys Workers write
    (throughput.py) are read inside the script call."""
    if not queues:
        return []

    async def call(group: Sequence[QueueRef]) -> list[Any]:
        keys: list[str] = []
        for queue in group:
            keys += [queue.base, store.dlq(queue).base]
        answer: list[Any] = await store.scripts.snapshot(
            keys=keys,
            args=[
                waiting_sample,
                failed_sample,
                throughput.METRIC_POINTS,
                sample_key_base,
                SAMPLE_POINTS if sample_key_base else 0,
            ],
        )
        return answer

    raw = await per_slot(queues, call, cluster=is_cluster_client(store.redis))
    counted: dict[QueueRef, int] | None = None
    refused = False
    if with_workers and any(sum(int(n) for n in row[0][:6]) for row in raw):
        found = await workers.workers(store.redis, queues)
        refused = found is None
        counted = None if found is None else {q: len(rows) for q, rows in found.items()}
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    result = []
    for queue, row in zip(queues, raw, strict=True):
        counts, paused, oldest, names, reasons, dlq_depth = row[:6]
        rate = throughput.from_metrics(row[6] if len(row) > 6 else [], now)
        if rate is None and len(row) > 7 and row[7]:
            rate = throughput.from_samples(_points(row[7]), now, window_ms=SAMPLE_WINDOW_MS)
        by_state = {state: int(n) for state, n in zip(COUNT_STATES, counts, strict=True)}
        oldest_since = int(oldest)
        result.append(
            QueueSnapshot(
                name=queue.name,
                prefix=queue.prefix,
                label=queue.shown,
                counts=by_state,
                is_paused=bool(int(paused)),
                oldest_waiting_age_ms=max(now - oldest_since, 0) if oldest_since >= 0 else None,
                top_waiting_names=_tally(names),
                top_failure_reasons=_tally([_reason_headline(r) for r in reasons]),
                dlq_depth=int(dlq_depth),
                waiting_sample=waiting_sample,
                failed_sample=failed_sample,
                workers=None if counted is None else counted[queue],
                workers_unknown=refused,
                throughput=rate,
                time_to_empty_ms=throughput.time_to_empty_ms(
                    by_state["waiting"] + by_state["prioritized"], rate
                ),
            )
        )
    return result
