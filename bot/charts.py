"""The picture: a queue's depth over the last hour, from the samples each tick keeps
(`<state>:depth:<prefix>:<queue>`, newest first), drawn with matplotlib as a PNG. Slack
posts it in incident channels and under `snapshot --chart`; it knows nothing of either.

Where Workers record BullMQ metrics, the queue's jobs completed and failed per minute are
drawn beside its depth, dashed, on their own right-hand axis: series named
`<queue> completed/min` and `<queue> failed/min` (throughput.RATE_SUFFIXES)."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from redis.asyncio import Redis

from bot.queues.bullmq.throughput import RATE_SUFFIXES, minute_series
from bot.queues.samples import DepthSamples

FullName = Callable[[str], Awaitable[str | None]]
"""A person's word for a queue (an alert's `queue` label) to its full name, or None."""


async def _as_is(word: str) -> str | None:
    return word


class DepthChart:
    def __init__(self, redis: Redis, sample_key_base: str, full_name: FullName = _as_is) -> None:
        self.samples = DepthSamples(redis, sample_key_base)
        self.full_name = full_name

    async def png(self, queues: Sequence[str]) -> bytes | None:
        """None when no queue has two samples in the last hour yet."""
        data: dict[str, list[tuple[int, int]]] = {}
        for word in queues:
            full = await self.full_name(word)
            if full is not None:
                data[word] = await self.samples.series(full)
        data = {q: pts for q, pts in data.items() if len(pts) >= 2}
        if not data:
            return None
        return await draw_png({**data, **await self.rates(queues)})

    async def rates(self, queues: Sequence[str]) -> dict[str, list[tuple[int, int]]]:
        """Completed and failed per minute over the hour, where Workers record metrics."""
        now = int(time.time() * 1000)
        found: dict[str, list[tuple[int, int]]] = {}
        for word in queues:
            full = await self.full_name(word)
            if full is not None:
                for suffix, points in (await minute_series(self.samples.redis, full, now)).items():
                    found[f"{word}{suffix}"] = points
        return found


async def draw_png(data: dict[str, list[tuple[int, int]]]) -> bytes:
    """Draw off the event loop: matplotlib takes tens of milliseconds."""
    return await asyncio.to_thread(_draw, data)


def _draw(data: dict[str, list[tuple[int, int]]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 2.6), dpi=110)
    rates = {q: pts for q, pts in data.items() if q.endswith(RATE_SUFFIXES)}
    for queue, points in data.items():
        if queue in rates:
            continue
        times = [datetime.fromtimestamp(t / 1000, tz=UTC) for t, _ in points]
        x = mdates.date2num(times)  # type: ignore[no-untyped-call]
        ax.plot(x, [d for _, d in points], label=queue, linewidth=1.8)
    if rates:
        right = ax.twinx()
        for name, points in rates.items():
            times = [datetime.fromtimestamp(t / 1000, tz=UTC) for t, _ in points]
            x = mdates.date2num(times)  # type: ignore[no-untyped-call]
            right.plot(x, [d for _, d in points], label=name, linewidth=1.2, linestyle="--")
        right.set_ylabel("jobs / min", fontsize=8)
        right.set_ylim(bottom=0)
        right.legend(fontsize=7, loc="upper right")
    ax.set_title("Queue depth (waiting), last hour, UTC", fontsize=10)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=UTC))  # type: ignore[no-untyped-call]
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()
