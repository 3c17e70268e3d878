"""The one Redis client a process uses, built from REDIS_URL.

It fails fast when Redis is down (a CLI call must answer in seconds with host:port, not hang
through a minute of retries) and decodes replies to str, as PyPI bullmq expects. It also
counts the commands it sends (`commands_sent`), so the bot can measure what its own tick
costs instead of assuming it (`budget`).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from bot.config import Settings

CONNECT_TIMEOUT_S = 3.0
COMMAND_TIMEOUT_S = 30.0


class _Sent:
    count = 0


def commands_sent() -> int:
    """Commands this process has sent to Redis so far (each command of a pipeline counts)."""
    return _Sent.count


class _Counting:
    """Mixed into whatever connection class the URL picked (TCP, TLS, unix socket)."""

    def pack_command(self, *args: Any) -> Any:
        _Sent.count += 1
        return super().pack_command(*args)  # type: ignore[misc]


def make_redis(settings: Settings, *, client_name: str = "queueops") -> Redis:
    redis = Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=COMMAND_TIMEOUT_S,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), retries=2),
        client_name=client_name,
    )
    pool = redis.connection_pool
    base = pool.connection_class
    pool.connection_class = type(f"Counting{base.__name__}", (_Counting, base), {})
    return redis
