"""What a CLI call costs Redis (issue 9, goal 4): a snapshot is one command to a RESP2 Redis.

Counted two ways on a private redis-server (so nothing else is counted): MONITOR, which sees
what the server ran (bench/command_counter.py), and the client's own counter
(bot/redis_client.commands_sent), which also sees handshake commands a Redis 7.0 MONITOR
does not show because the server refused them (CLIENT SETINFO before 7.2).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from test_cli import queueops

from bot.cli import run_words
from bot.config import load_settings
from bot.embedded_redis import embedded_redis
from bot.redis_client import commands_sent, make_redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from command_counter import count_commands

QUEUES = "batch-jobs,dsar-jobs"


@pytest.fixture
def private_redis() -> Iterator[str]:
    with embedded_redis() as (url, _):
        yield url


async def test_a_cli_snapshot_is_the_cluster_check_and_one_evalsha_not_audited(
    private_redis: str,
) -> None:
    env = {"REDIS_URL": private_redis, "QUEUEOPS_QUEUES": QUEUES, "QUEUEOPS_PREFIX": "bull"}
    # First use on a fresh server: NOSCRIPT, SCRIPT LOAD, EVALSHA. Steady state is counted.
    assert (await queueops("snapshot", **env)).code == 0
    async with count_commands(private_redis) as tally:
        run = await queueops("snapshot", **env)
    assert run.code == 0 and "batch-jobs" in run.out
    # INFO cluster: whether this Redis is a cluster, told by the server (bot/redis_client.py).
    assert dict(tally.client) == {"INFO": 1, "EVALSHA": 1}
    redis = Redis.from_url(private_redis, decode_responses=True)
    try:
        assert (
            await redis.exists("qo-test-cli-state:audit") == 0
        )  # the state prefix queueops() sets
    finally:
        await redis.aclose()


async def test_the_cli_connection_sends_no_handshake(private_redis: str) -> None:
    """No HELLO (RESP2), no CLIENT SETNAME or SETINFO: the cluster check and the snapshot."""
    settings = load_settings(redis_url=private_redis, queues=QUEUES)
    await run_words(["snapshot"], settings)  # loads the script
    before = commands_sent()
    reply = await run_words(["snapshot"], settings)
    assert reply.ok and commands_sent() - before == 2


async def test_reads_are_audited_when_asked_and_budget_counts_it(private_redis: str) -> None:
    env = {
        "REDIS_URL": private_redis,
        "QUEUEOPS_QUEUES": QUEUES,
        "QUEUEOPS_STATE_PREFIX": "qo-cost",
    }
    plain = (await queueops("budget", "--json", **env)).json()
    assert plain["snapshotCommands"] == 1 and plain["readsAudited"] is False
    audited = {**env, "QUEUEOPS_AUDIT_READS": "true"}
    budget = (await queueops("budget", "--json", **audited)).json()
    assert budget["snapshotCommands"] == 2 and budget["readsAudited"] is True
    assert (await queueops("snapshot", **audited)).code == 0
    async with count_commands(private_redis) as tally:
        assert (await queueops("snapshot", **audited)).code == 0
    # A one-shot CLI run also asks once whether Redis is a cluster (serve asks at start).
    assert tally.client_total == budget["snapshotCommands"] + 1
    assert dict(tally.client) == {"INFO": 1, "EVALSHA": 1, "XADD": 1}
    redis = Redis.from_url(private_redis, decode_responses=True)
    try:
        rows = await redis.xrange("qo-cost:audit")
        # The first budget ran with reads unaudited; the rest with QUEUEOPS_AUDIT_READS=true.
        assert [r[1]["command"] for r in rows] == ["budget", "snapshot", "snapshot"]
    finally:
        await redis.aclose()
    text = (await queueops("budget", **env)).out
    assert "Redis commands per snapshot" in text and "1 (1 script call;" in text


async def test_changes_are_always_audited_and_failed_reads_too(private_redis: str) -> None:
    env = {"REDIS_URL": private_redis, "QUEUEOPS_QUEUES": QUEUES, "QUEUEOPS_STATE_PREFIX": "qo-a"}
    assert (await queueops("pause", "batch-jobs", **env)).code == 0
    assert (await queueops("dlq", "list", "batch-jobs", **env)).code == 0
    assert (await queueops("dlq", "show", "batch-jobs", "nope", **env)).code == 1
    redis = Redis.from_url(private_redis, decode_responses=True)
    try:
        rows = await redis.xrange("qo-a:audit")
    finally:
        await redis.aclose()
    assert [(r[1]["command"], r[1]["outcome"]) for r in rows] == [
        ("pause", "ok"),
        ("dlq show", "error"),
    ]


async def test_a_long_lived_connection_is_named(private_redis: str) -> None:
    settings = load_settings(redis_url=private_redis)
    serve = make_redis(settings, client_name="queueops-serve")
    oneshot = make_redis(settings)
    try:
        await serve.ping()
        await oneshot.ping()
        names = sorted(c["name"] for c in await oneshot.client_list())
        assert names == ["", "queueops-serve"]
        protocols = {c["resp"] for c in await oneshot.client_list()}
        assert protocols == {"2"}
    finally:
        await serve.aclose()
        await oneshot.aclose()
