"""Depth samples: `<state>:depth:<prefix>:<queue>`, "ms:depth" entries, newest first,
written inside the tick's probe script (probe.lua) and read here for charts.

The key holds the queue's full name, so on Redis Cluster it hashes by the queue's own tag
(`queueops:depth:{bull}:orders`): the probe writes it in the same slot as the queue's keys.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

WINDOW_MS = 3_600_000


def sample_key_base(state_prefix: str) -> str:
    """`queueops:depth:`: the state prefix without its hash-tag braces, so a sample key's
    tag is the queue's (see the module docstring)."""
    return f"{state_prefix.replace('{', '').replace('}', '')}:depth:"


class DepthSamples:
    def __init__(self, redis: Redis, key_base: str) -> None:
        self.redis = redis
        self.base = key_base

    async def series(self, full_name: str, *, window_ms: int = WINDOW_MS) -> list[tuple[int, int]]:
        """(ms, depth) of the last `window_ms` of queue `PREFIX:NAME`, oldest first."""
        since = int(time.time() * 1000) - window_ms
        points = []
        for raw in await self.redis.lrange(f"{self.base}{full_name}", 0, -1):
            at, _, depth = str(raw).partition(":")
            if int(at) >= since:
                points.append((int(at), int(depth)))
        return sorted(points)
