"""Instant drains against a real drain endpoint (tests/interop/drain-endpoint.mjs: npm bullmq
Workers behind the app's contract), with a 5-minute cadence: the tick never comes during a
test, so whatever is drained was drained by a marker's wake-up."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from bullmq import Queue
from conftest import REDIS_URL, NodeCall
from drain_helpers import TOKEN, Endpoint
from slack_helpers import MakeBot
from test_cron import queueops, requests_seen

from bot.http_app import INSTANT, TICKER
from bot.redis_client import WAKE_CLIENT_NAME
from scheduler.instant import InstantDrain

EVERY_5M = 300_000


async def instant_bot(make_bot: MakeBot, endpoint: Endpoint, **extra: Any) -> Any:
    values: dict[str, Any] = {
        "queues": "a,b",
        "drain_url": endpoint.url,
        "cron_secret": TOKEN,
        "drain_every_ms": EVERY_5M,
        "drain_wake_debounce_ms": 300,
        **extra,
    }
    return await make_bot(**values)


def watch_of(bot: Any) -> InstantDrain:
    return bot.app[INSTANT]  # type: ignore[no-any-return]


async def until(check: Callable[[], Awaitable[bool]], within: float) -> float:
    """Seconds until `check()` holds; fails after `within`."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < within, f"not within {within} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def completed(node: NodeCall, queue: str, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        counts = (await node("counts", queues=[queue]))[queue]
        return bool(counts["completed"] >= count)

    return check


async def history(redis: aioredis.Redis, prefix: str) -> list[dict[str, Any]]:
    return [json.loads(r) for r in await redis.lrange(f"{prefix}-state:cron:history", 0, -1)]


async def test_a_job_npm_adds_is_drained_within_seconds_not_at_the_next_tick(
    make_bot: MakeBot, endpoint: Endpoint, node: NodeCall, redis: aioredis.Redis, prefix: str
) -> None:
    bot = await instant_bot(make_bot, endpoint)
    await bot.app[TICKER].tick()  # leads: the watch starts
    watch = watch_of(bot)
    assert watch.running
    started = time.monotonic()
    await node("add", queue="a", jobs=[{"name": "x"}])
    await until(completed(node, "a", 1), within=5)
    assert time.monotonic() - started < 5  # against a 5-minute cadence
    # The bot took the marker (ZCARD 0) and the endpoint's Workers, started afterwards,
    # still found the job: their first move is moveToActive, not a wait on the marker.
    assert await redis.zcard(f"{prefix}:a:marker") == 0
    # One call: the marker npm's moveToActive leaves behind wakes the watch again, and
    # the probe before a drain finds nothing to run.
    [call] = await requests_seen(endpoint, 1)
    assert (call["queue"], call["status"], call["processed"]) == ("a", 200, 1)
    [run] = await history(redis, prefix)
    assert run["trigger"] == "wake" and run["queues"] == ["a"] and run["processed"] == 1
    assert watch_of(bot).empty_wakes >= 1


async def test_a_delayed_job_is_drained_at_its_time(
    make_bot: MakeBot, endpoint: Endpoint, node: NodeCall
) -> None:
    bot = await instant_bot(make_bot, endpoint)
    await bot.app[TICKER].tick()
    started = time.monotonic()
    await node("add", queue="b", jobs=[{"name": "later", "opts": {"delay": 3000}}])
    await asyncio.sleep(1.5)
    assert (await node("counts", queues=["b"]))["b"]["delayed"] == 1  # not before its time
    assert await requests_seen(endpoint, 0.1) == []
    await until(completed(node, "b", 1), within=6)
    took = time.monotonic() - started
    assert 2.9 <= took < 3.0 + 3.0, took  # within a few seconds of the due time
    [call] = await requests_seen(endpoint, 1)
    assert call["queue"] == "b" and call["processed"] == 1


async def test_a_burst_of_a_thousand_adds_is_a_handful_of_drains_and_every_job_runs(
    make_bot: MakeBot, endpoint: Endpoint, node: NodeCall, prefix: str
) -> None:
    bot = await instant_bot(make_bot, endpoint)
    await bot.app[TICKER].tick()
    queue = Queue("a", {"prefix": prefix, "connection": REDIS_URL})
    try:
        for n in range(1000):  # 1,000 separate adds, each touching the marker
            await queue.add("burst", {"n": n})
    finally:
        await queue.close()
    await until(completed(node, "a", 1000), within=30)
    calls = await requests_seen(endpoint, 1.5)
    assert 1 <= len(calls) <= 5, calls
    assert sum(c["processed"] for c in calls) == 1000
    assert (await node("counts", queues=["a"]))["a"]["waiting"] == 0


async def test_two_replicas_never_drain_the_same_wake_up(
    make_bot: MakeBot, endpoint: Endpoint, node: NodeCall
) -> None:
    one = await instant_bot(make_bot, endpoint)
    two = await instant_bot(make_bot, endpoint)
    await one.app[TICKER].tick()
    await two.app[TICKER].tick()
    assert [watch_of(one).running, watch_of(two).running] == [True, False]  # the leader only
    # A replica that still believes it leads (its lease taken over since) may take a marker:
    # it must not drain, the lease decides.
    stale = watch_of(two)
    stale.cron.on = stale.cron.leading = True
    await stale.on_tick(await two.app[TICKER].service.probe())
    for n in range(5):
        await node("add", queue="a", jobs=[{"name": f"x{n}"}])
        await asyncio.sleep(0.4)
    await asyncio.sleep(1.0)
    calls = await requests_seen(endpoint, 1.0)
    processed = sum(c["processed"] for c in calls)
    assert len(calls) <= 5 and processed <= 5
    # Every call came from the lease holder: the stale one found the lease not its own.
    assert stale.drains == 0
    await stale.stop()


async def test_always_on_mode_never_touches_the_markers(
    make_bot: MakeBot, endpoint: Endpoint, node: NodeCall, redis: aioredis.Redis, prefix: str
) -> None:
    bot = await instant_bot(make_bot, endpoint)
    await redis.hset(f"{prefix}-state:cron", "mode", "always-on")
    await bot.app[TICKER].tick()
    watch = watch_of(bot)
    await node("add", queue="a", jobs=[{"name": "x"}])
    await asyncio.sleep(0.8)
    assert not watch.running and watch.blocks == 0
    assert await redis.zcard(f"{prefix}:a:marker") == 1  # left for the Workers
    assert await requests_seen(endpoint, 0.1) == []

    # Back to cron: the watch starts, and a running watch stops when the mode leaves cron.
    await redis.hset(f"{prefix}-state:cron", "mode", "cron")
    await bot.app[TICKER].tick()  # the tick drains what waits, and the watch starts
    assert watch.running
    await redis.hset(f"{prefix}-state:cron", "mode", "always-on")
    started = time.monotonic()
    await bot.app[TICKER].tick()
    assert not watch.running
    assert time.monotonic() - started < 1.0  # the block in progress ends at once

    async def wake_clients() -> list[object]:
        return [c for c in await redis.client_list() if c.get("name") == WAKE_CLIENT_NAME]

    # The server drops a closed connection when it reads the close: on a busy machine a
    # moment after the client let go (a CI run once saw it still listed).
    for _ in range(40):
        if not await wake_clients():
            break
        await asyncio.sleep(0.05)
    assert not await wake_clients()


async def test_a_dropped_connection_is_reopened_with_backoff_and_logged_once(
    make_bot: MakeBot,
    endpoint: Endpoint,
    node: NodeCall,
    redis: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = await instant_bot(make_bot, endpoint)
    await bot.app[TICKER].tick()
    watch = watch_of(bot)

    async def wake_clients() -> list[dict[str, Any]]:
        return [c for c in await redis.client_list() if c.get("name") == WAKE_CLIENT_NAME]

    async def blocked() -> bool:
        return bool(await wake_clients())

    await until(blocked, within=3)
    caplog.set_level(logging.INFO, logger="scheduler.instant")
    blocks_before = watch.blocks
    for client in await wake_clients():  # what a hosted Redis does to a long block
        await redis.execute_command("CLIENT", "KILL", "ID", client["id"])
    await until(blocked, within=5)  # reopened after the backoff
    assert watch.blocks - blocks_before <= 3  # one failed block, then one: no storm
    failures = [r for r in caplog.records if "blocking connection failed" in r.getMessage()]
    assert len(failures) == 1
    assert any("is back" in r.getMessage() for r in caplog.records)
    await node("add", queue="a", jobs=[{"name": "after"}])
    await until(completed(node, "a", 1), within=5)


async def test_the_measured_wake_cost_reaches_cron_status_and_budget(
    make_bot: MakeBot, endpoint: Endpoint, prefix: str
) -> None:
    bot = await instant_bot(make_bot, endpoint)
    ticker = bot.app[TICKER]
    await ticker.tick()  # starts the watch
    watch = watch_of(bot)
    for _ in range(2):  # cadences that end idle: one block each (the first tick warms up)
        await asyncio.sleep(0.3)
        await ticker.tick()
    assert watch.blocks == 1  # still the first block: it lasts up to the 5-minute cadence
    code, out, _ = await queueops("cron", "status", "--json", prefix=prefix, DRAIN_URL=endpoint.url)
    status = json.loads(out)
    assert code == 0
    assert status["instantDrains"] == {"on": True, "blocksPerCadence": 1, "measured": True}
    code, out, _ = await queueops("budget", "--json", prefix=prefix, DRAIN_URL=endpoint.url)
    budget = json.loads(out)
    assert budget["wakeCost"] == 1 and budget["wakeMeasured"] and budget["idleTickCommands"] == 1
    assert budget["cronIdlePerMonth"] == 8640 * 2  # the probe and the block, every 5 minutes


async def test_serve_watches_from_its_first_tick_at_start_not_a_cadence_later(
    make_bot: MakeBot, endpoint: Endpoint, node: NodeCall
) -> None:
    bot = await instant_bot(make_bot, endpoint)  # no tick by hand: the scheduler's own

    async def watching() -> bool:
        return watch_of(bot).running

    await until(watching, within=3)
    await node("add", queue="b", jobs=[{"name": "x"}])
    await until(completed(node, "b", 1), within=5)
