"""The one Redis client a process uses, built from REDIS_URL.

It fails fast when Redis is down (a CLI call must answer in seconds with host:port, not hang
through a minute of retries) and decodes replies to str, as PyPI bullmq expects. It also
counts the commands it sends (`commands_sent`), so the bot can measure what its own tick
costs instead of assuming it (`budget`).

A connection's handshake costs commands too, and a CLI call opens one connection for one
command, so the handshake is kept to what is needed:
- RESP2. redis-py 8 defaults to RESP3 and opens every connection with `HELLO 3`; nothing
  here needs RESP3 (our scripts answer in RESP2 either way), so the default is 2, which
  needs no HELLO. A URL may still ask for `?protocol=3` (the URL's options win).
  AUTH is sent when the URL has credentials: that one is needed.
- A name (CLIENT SETNAME, and CLIENT SETINFO with the library's name and version) only for
  long-lived connections (`queueops serve`, the shell), so `CLIENT LIST` tells an operator
  which client is the bot. A one-shot CLI call is gone before anyone could look.

Redis Cluster is told from the server, not from a variable: `connect` asks once (`INFO
cluster`) and, on a cluster, returns redis-py's cluster client instead, typed as `Redis`
(it speaks the same commands; the few places that differ check
`bot.queues.bullmq.slots.is_cluster_client`). On a cluster,
queueops' own state keys move under one hash tag (`{queueops}:…`) so the scripts that touch
several of them (the tick's lease and history) stay in one slot.

The pool is bounded (POOL_SIZE connections; a command waits for a free one): 50 Slack
commands at once used to open 48 connections, each with its handshake round trips and, in
redis-py, a package-metadata lookup for CLIENT SETINFO (2 ms of CPU on the event loop). The
library's version is now looked up once per process. Nothing here holds a connection while
waiting for another (no WATCH), so a bounded pool cannot deadlock.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.driver_info import DriverInfo
from redis.exceptions import RedisError

from bot.config import Settings
from bot.queues.keys import hash_tag

CONNECT_TIMEOUT_S = 3.0
COMMAND_TIMEOUT_S = 30.0
DEFAULT_PROTOCOL = 2
POOL_SIZE = 16
POOL_WAIT_S = 20.0


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


@cache
def _driver_info() -> DriverInfo:
    """CLIENT SETINFO's library name and version, read from package metadata once."""
    return DriverInfo()


def _naming(client_name: str | None) -> dict[str, Any]:
    """The connection's name and library info for CLIENT LIST, or none at all (a one-shot
    call: no CLIENT SETNAME / SETINFO in its handshake)."""
    if client_name is None:
        return {"driver_info": None}
    return {"client_name": client_name, "driver_info": _driver_info()}


def make_redis(settings: Settings, *, client_name: str | None = None) -> Redis:
    """The client for REDIS_URL. `client_name`: a long-lived process's name in CLIENT LIST
    (`queueops-serve`); None for a one-shot call, whose connection then sends no handshake
    command beyond AUTH (when the URL has credentials) and SELECT (a database other than 0)."""
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT_S,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=COMMAND_TIMEOUT_S,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), retries=2),
        protocol=DEFAULT_PROTOCOL,
        **_naming(client_name),
    )
    base = pool.connection_class
    pool.connection_class = type(f"Counting{base.__name__}", (_Counting, base), {})
    return Redis.from_pool(pool)


class _CountingCluster(RedisCluster):
    """The cluster client, counting what it sends as `_Counting` does for a single server
    (its pipelines are not counted: the tick sends none)."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        _Sent.count += 1
        return await super().execute_command(*args, **kwargs)


def _cluster_kwargs(client_name: str | None, *, max_connections: int) -> dict[str, Any]:
    """What a cluster client takes beside its URL and socket timeout (per node)."""
    return {
        "decode_responses": True,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "protocol": DEFAULT_PROTOCOL,
        "max_connections": max_connections,
        **_naming(client_name),
    }


def make_cluster(settings: Settings, *, client_name: str | None = None) -> Redis:
    """The cluster client for REDIS_URL (any node: it learns the others from it)."""
    client = _CountingCluster.from_url(
        settings.redis_url,
        socket_timeout=COMMAND_TIMEOUT_S,
        **_cluster_kwargs(client_name, max_connections=POOL_SIZE),
    )
    return client  # type: ignore[return-value]  # same command API, see the docstring


def cluster_settings(settings: Settings) -> Settings:
    """The settings for a cluster: queueops' own keys under one hash tag."""
    if hash_tag(f"{settings.state_prefix}:") is not None:
        return settings
    return settings.model_copy(update={"state_prefix": f"{{{settings.state_prefix}}}"})


async def connect(settings: Settings, *, client_name: str | None = None) -> tuple[Redis, Settings]:
    """The client for REDIS_URL, a cluster client when the server is in cluster mode, and
    the settings to use with it. One `INFO cluster`; a server that refuses INFO (some
    hosted ones do) or cannot be reached is taken as a single server (a later command
    reports what is wrong)."""
    plain = make_redis(settings, client_name=client_name)
    if settings.redis_url.startswith("unix:"):
        return plain, settings
    try:
        info = await plain.info("cluster")
    except (RedisError, OSError):
        return plain, settings
    if not int(info.get("cluster_enabled", 0)):
        return plain, settings
    await plain.aclose()
    return make_cluster(settings, client_name=client_name), cluster_settings(settings)


WAKE_CLIENT_NAME = "queueops-wake"
WAKE_CLUSTER_CONNECTIONS = 64
"""Per node, on a cluster: one blocking BZPOPMIN per slot holding queues may wait there."""


def make_wake_client(
    settings: Settings, *, socket_timeout_s: float, cluster: bool = False
) -> Redis:
    """The instant drains' blocking connection (scheduler/instant.py): its own single
    connection, so no command queues behind a BZPOPMIN of minutes; a socket timeout above
    the block; no retry (a lost connection is reopened by the caller, with backoff, not
    re-sent at once); named, so CLIENT LIST shows it; not counted in `commands_sent`, since
    the tick measures its own cost with that counter and the watch counts its blocks. On a
    cluster, a cluster client: one connection per master holding markers (a BZPOPMIN per
    slot, scheduler/instant.py)."""
    if cluster:
        wake = RedisCluster.from_url(
            settings.redis_url,
            socket_timeout=socket_timeout_s,
            **_cluster_kwargs(WAKE_CLIENT_NAME, max_connections=WAKE_CLUSTER_CONNECTIONS),
        )
        return wake  # type: ignore[return-value]
    return Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=socket_timeout_s,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), retries=0),
        protocol=DEFAULT_PROTOCOL,
        client_name=WAKE_CLIENT_NAME,
        driver_info=_driver_info(),
        max_connections=1,
    )
