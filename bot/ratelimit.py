"""Per-user rate limit for commands that change things (12 a minute, as drain endpoints allow).

A fixed one-minute window in Redis (`INCR` + `EXPIRE` in one MULTI), so every replica
counts the same. It runs only when someone sends a command: no idle cost.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis


class RateLimiter:
    def __init__(self, redis: Redis, prefix: str, *, per_minute: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.per_minute = per_minute

    async def wait_seconds(self, who: str) -> int:
        """Count one use by `who`; 0 if allowed, else how long until the window turns."""
        now = time.time()
        window = int(now // 60)
        key = f"{self.prefix}:rate:{who}:{window}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 90)
            count, _ = await pipe.execute()
        if int(count) <= self.per_minute:
            return 0
        return max(1, int((window + 1) * 60 - now))
