"""Shared fixtures: a real Redis (the session's private `redis-server`, see
redis_for_tests), a fresh key prefix per test, the QueueService on it, and the npm bullmq
bridge.

Every test works under its own BullMQ prefix (`qo-test-<hex>`) and deletes its keys after,
so tests can also share an outside Redis (`QUEUEOPS_TEST_REDIS_URL`) with real queues.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from drain_helpers import endpoint  # noqa: F401  (the drain endpoint fixture)
from node_bullmq import node_available, node_bullmq, node_unavailable_reason
from pg_fixtures import pg_admin_url, pg_conn, pg_url  # noqa: F401  (the Postgres fixtures)
from redis.asyncio.cluster import RedisCluster
from redis_cluster_for_tests import ClusterStartError, RedisClusterForTests, start_cluster
from redis_for_tests import REDIS_URL, delete_prefix
from slack_helpers import make_bot, slack  # noqa: F401  (fixtures shared by the Slack tests)

from bot.queues.service import QueueService

NodeCall = Callable[..., Awaitable[Any]]


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest_asyncio.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client: aioredis.Redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await client.ping()
    except (OSError, aioredis.ConnectionError) as exc:
        await client.aclose()
        pytest.fail(f"the tests need a Redis at {REDIS_URL}: {exc}")
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def prefix(redis: aioredis.Redis) -> AsyncIterator[str]:
    name = f"qo-test-{uuid.uuid4().hex[:10]}"
    yield name
    await delete_prefix(redis, name)


@pytest.fixture
def service(redis: aioredis.Redis, prefix: str) -> QueueService:
    return QueueService(redis, prefixes=[prefix])


@pytest.fixture
def node(prefix: str) -> NodeCall:
    """`await node("counts", queues=[...])`: npm bullmq on this test's prefix.

    Without Node the interop tests are skipped locally, but fail under CI, where
    `.ci/run` installs npm bullmq and a skip would hide a broken setup.
    """
    _require_node()

    async def call(command: str, **args: Any) -> Any:
        return await node_bullmq(command, {"prefix": prefix, **args}, REDIS_URL)

    return call


def _require_node() -> None:
    """Without Node the interop tests are skipped locally, but fail under CI."""
    if not node_available():
        if os.environ.get("CI"):
            pytest.fail(node_unavailable_reason())
        pytest.skip(node_unavailable_reason())


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterForTests]:
    """A real 3-master Redis Cluster (redis_cluster_for_tests), started by the first test
    that asks for it and stopped at session end, so tests without it pay nothing.

    It fails rather than skips when redis-server or redis-cli is missing: the test command
    installs both, and a skip would hide the cluster tests not running at all.
    """
    try:
        cluster = start_cluster(masters=3)
    except ClusterStartError as err:
        pytest.fail(f"the cluster tests need a Redis Cluster: {err}", pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster(redis_cluster: RedisClusterForTests) -> RedisClusterForTests:
    """The session's cluster, emptied (and with no slot left half migrated) for this test.

    Slots a previous test moved stay where they are: ask `node_for_slot`, do not assume.
    """
    redis_cluster.flushall()
    return redis_cluster


@pytest.fixture
def cluster_node(cluster: RedisClusterForTests) -> NodeCall:
    """`await cluster_node("counts", prefix=..., queues=[...])`: npm bullmq on the cluster
    (ioredis' Cluster), skipped or failed without Node as `node` is."""
    _require_node()

    async def call(command: str, **args: Any) -> Any:
        return await node_bullmq(command, args, cluster.url, cluster_nodes=cluster.nodes_csv)

    return call


@pytest_asyncio.fixture
async def cluster_client(cluster: RedisClusterForTests) -> AsyncIterator[RedisCluster]:
    """redis-py's asyncio cluster client, the kind queueops uses, entering at one node."""
    client = RedisCluster.from_url(cluster.url, decode_responses=True)
    yield client
    await client.aclose()
