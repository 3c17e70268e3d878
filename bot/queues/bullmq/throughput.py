"""Throughput: jobs completed and failed per minute, and the time to empty a queue at that
rate.

From BullMQ's metrics keys where the Workers record them (npm bullmq Worker option
`metrics: {maxDataPoints}`; commands/includes/collectMetrics.lua, run by moveToFinished):
`<queue>:metrics:<completed|failed>` is a hash of `count` (every job finished so far),
`prevTS` (when the current minute's bucket began) and `prevCount` (`count` at that time),
and `:data` is a list of per-minute counts, newest first, pushed only when a job finishes in
a later minute (so the minutes since `prevTS` are not in the list yet: this module adds them
as getMetrics' callers must). They are read inside the snapshot's one script call
(lua/snapshot.lua), bounded to `METRIC_POINTS` minutes.

Without metrics keys, the rate is derived from the depth samples the scheduler's tick takes
(bot/queues/samples.py): a falling depth is jobs leaving the queue. It cannot tell completed
from failed, nor see jobs arriving as fast as they leave, so it is labelled "samples".
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from bot.queues.models import Throughput

METRIC_POINTS = 5
"""The newest per-minute points read per metric: the rate covers up to the last 5 minutes
(a bounded LRANGE: maxDataPoints may be 10,000)."""

MINUTE_MS = 60_000


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def minute_counts(
    meta: Sequence[Any], data: Sequence[Any], now_ms: int, window: int = METRIC_POINTS
) -> tuple[int, float] | None:
    """(jobs, minutes) over the last `window` minutes of one metric, the current minute
    counted for the part of it that has passed; None when the metric was never recorded.

    As collectMetrics writes them: the jobs of the minute `prevTS` falls in are
    `count - prevCount`; data[0] is the minute before that one. When `prevTS`'s minute is
    over, the minutes after it had no job (a job would have pushed them)."""
    count, prev_ts, prev_count = (_int(v) for v in (list(meta) + [None] * 3)[:3])
    if count is None:
        return None
    if prev_ts is None:  # recorded once: the first job sets prevTS; it may be cut short
        return count, 1.0
    now_minute, prev_minute = now_ms // MINUTE_MS, prev_ts // MINUTE_MS
    in_prev_minute = max(count - (prev_count or 0), 0)
    passed = (now_ms % MINUTE_MS) / MINUTE_MS
    points = [max(_int(p) or 0, 0) for p in data]
    if prev_minute >= now_minute:  # still in prevTS' minute: it is the partial one
        jobs = in_prev_minute + sum(points[: window - 1])
        minutes = min(len(points), window - 1) + passed
    else:
        gap = now_minute - prev_minute - 1  # whole minutes after prevTS' with no job
        full = ([0] * min(gap, window) + [in_prev_minute] + points)[: window - 1]
        jobs = sum(full)
        minutes = len(full) + passed
    return jobs, max(minutes, 1.0)


def from_metrics(metrics: Sequence[Any], now_ms: int) -> Throughput | None:
    """The rate from the snapshot script's metrics part ({completedMeta, completedData,
    failedMeta, failedData}); None when no Worker records metrics for this queue."""
    if len(metrics) < 4:
        return None
    completed = minute_counts(metrics[0], metrics[1], now_ms)
    failed = minute_counts(metrics[2], metrics[3], now_ms)
    if completed is None and failed is None:
        return None
    window = max(m for _, m in (completed or (0, 0.0), failed or (0, 0.0)))
    return Throughput(
        completed_per_min=round(completed[0] / completed[1], 2) if completed else 0.0,
        failed_per_min=round(failed[0] / failed[1], 2) if failed else 0.0,
        source="metrics",
        window_min=round(window, 2),
    )


def from_samples(
    points: Sequence[tuple[int, int]], now_ms: int, *, window_ms: int = METRIC_POINTS * MINUTE_MS
) -> Throughput | None:
    """The rate at which depth fell over the last `METRIC_POINTS` minutes of depth samples
    ((ms, depth), oldest first): each fall between two samples is jobs that left. None with
    fewer than two samples in that window."""
    recent = [(at, d) for at, d in points if at >= now_ms - window_ms]
    if len(recent) < 2:
        return None
    left = sum(max(a - b, 0) for (_, a), (_, b) in pairwise(recent))
    minutes = max((recent[-1][0] - recent[0][0]) / MINUTE_MS, 1 / 60)
    return Throughput(
        completed_per_min=round(left / minutes, 2),
        failed_per_min=None,
        source="samples",
        window_min=round(minutes, 2),
    )


def time_to_empty_ms(waiting: int, rate: Throughput | None) -> int | None:
    """How long `waiting` jobs take at the completed rate; 0 when nothing waits, None when
    nothing completes (no rate, or a rate of 0: it would never empty)."""
    if waiting <= 0:
        return 0
    if rate is None or not rate.completed_per_min:
        return None
    return int(waiting / rate.completed_per_min * MINUTE_MS)


RATE_SUFFIXES = (" completed/min", " failed/min")
"""How a chart's series of per-minute counts are named beside a queue's depth
(`<queue> completed/min`): drawn on their own axis (bot/charts.py)."""


def per_minute_points(
    meta: Sequence[Any], data: Sequence[Any], now_ms: int, minutes: int
) -> list[tuple[int, int]]:
    """(minute start ms, jobs) for the last `minutes` whole minutes and the current one,
    oldest first, from one metric as collectMetrics writes it (see `minute_counts`)."""
    count, prev_ts, prev_count = (_int(v) for v in (list(meta) + [None] * 3)[:3])
    if count is None:
        return []
    now_minute = now_ms // MINUTE_MS
    prev_minute = (prev_ts if prev_ts is not None else now_ms) // MINUTE_MS
    by_minute = {prev_minute: max(count - (prev_count or 0), 0)}
    for i, point in enumerate(data):
        by_minute[prev_minute - 1 - i] = max(_int(point) or 0, 0)
    first = now_minute - minutes
    return [(m * MINUTE_MS, by_minute.get(m, 0)) for m in range(first, now_minute + 1)]


async def minute_series(
    redis: Any, full_name: str, now_ms: int, *, minutes: int = 60
) -> dict[str, list[tuple[int, int]]]:
    """Completed and failed per minute over the last `minutes` of queue `PREFIX:NAME`, from
    BullMQ's metrics keys (one pipelined round trip: a hash read and a bounded LRANGE per
    metric); {} when no Worker records metrics there. For charts, not the snapshot."""
    pipe = redis.pipeline(transaction=False)
    for kind in ("completed", "failed"):
        key = f"{full_name}:metrics:{kind}"
        pipe.hmget(key, ["count", "prevTS", "prevCount"])
        pipe.lrange(f"{key}:data", 0, minutes - 1)
    done_meta, done_data, failed_meta, failed_data = await pipe.execute()
    found: dict[str, list[tuple[int, int]]] = {}
    for suffix, meta, data in (
        (RATE_SUFFIXES[0], done_meta, done_data),
        (RATE_SUFFIXES[1], failed_meta, failed_data),
    ):
        points = per_minute_points(meta, data, now_ms, minutes)
        if points:
            found[suffix] = points
    return found
