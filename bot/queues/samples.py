"""Depth samples: `<state>:depth:<prefix>:<queue>`, "ms:depth" entries, newest first,
written inside the tick's probe script (probe.lua) and read here for charts."""

from __future__ import annotations

import time

from redis.asyncio import Redis

WINDOW_MS = 3_600_000


class DepthSamples:
    def __init__(self, redis: Redis, key_base: str, prefix: str) -> None:
        self.redis = redis
        self.base = key_base
        self.prefix = prefix

    async def series(self, queue: str, *, window_ms: int = WINDOW_MS) -> list[tuple[int, int]]:
        """(ms, depth) of the last `window_ms`, oldest first."""
        since = int(time.time() * 1000) - window_ms
        points = []
        for raw in await self.redis.lrange(f"{self.base}{self.prefix}:{queue}", 0, -1):
            at, _, depth = str(raw).partition(":")
            if int(at) >= since:
                points.append((int(at), int(depth)))
        return sorted(points)
