"""`probe`: which queues a drain should visit now, for every queue in one Redis command."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bot.queues.models import ProbeResult, QueueWork
from bot.queues.store import QueueStore

ACTIVE_SAMPLE = 100


def due_score(now_ms: int) -> int:
    """BullMQ v5 scores a delayed job `timestamp * 0x1000 + counter`: everything at or
    under this score is due at `now_ms`."""
    return now_ms * 0x1000 + 0xFFF


async def probe(
    store: QueueStore, queues: Sequence[str], *, now_ms: int | None = None
) -> ProbeResult:
    """Exactly one EVALSHA for all queues (see lua/probe.lua).

    The script's KEYS are the queue bases and its ARGV start with the due score; a leader
    lease for the drain cron is meant to ride in the same call as extra leading KEYS/ARGV,
    so the tick stays one command.
    """
    if not queues:
        return ProbeResult(queues=[])
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    raw: list[Any] = await store.scripts.probe(
        keys=[store.keys(name).base for name in queues],
        args=[due_score(now), ACTIVE_SAMPLE],
    )
    return ProbeResult(
        queues=[
            QueueWork(
                name=name,
                is_paused=bool(int(paused)),
                ready=int(ready),
                due_delayed=int(due),
                stalled=int(stalled),
            )
            for name, (paused, ready, due, stalled) in zip(queues, raw, strict=True)
        ]
    )
