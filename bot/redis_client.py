"""The one Redis client a process uses, built from REDIS_URL.

It fails fast when Redis is down (a CLI call must answer in seconds with host:port, not hang
through a minute of retries) and decodes replies to str, as PyPI bullmq expects.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from bot.config import Settings

CONNECT_TIMEOUT_S = 3.0
COMMAND_TIMEOUT_S = 30.0


def make_redis(settings: Settings, *, client_name: str = "queueops") -> Redis:
    return Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=COMMAND_TIMEOUT_S,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), retries=2),
        client_name=client_name,
    )
