"""The drain cron and `drain` against a real drain endpoint (tests/interop/drain-endpoint.mjs:
npm bullmq Workers behind seed 001's contract)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer
from cli_runner import run_cli
from conftest import REDIS_URL, NodeCall
from drain_helpers import TOKEN, Endpoint, add_jobs, requests_seen
from slack_helpers import MakeBot
from slack_stub import SlackStub

from bot.http_app import TICKER
from bot.queues.service import QueueService


async def cron_bot(make_bot: MakeBot, endpoint: Endpoint, **extra: Any) -> Any:
    """A bot whose drains come from its ticks only (the plain cron: instant drains, which a
    marker wakes between ticks, have tests/test_instant_drain.py)."""
    values: dict[str, Any] = {
        "queues": "a,b",
        "drain_url": endpoint.url,
        "cron_secret": TOKEN,
        "drain_every_ms": 3_600_000,
        "drain_instant": False,
        **extra,
    }
    return await make_bot(**values)


async def test_idle_ticks_call_nothing_and_work_drains_only_that_queue(
    make_bot: MakeBot,
    endpoint: Endpoint,
    service: QueueService,
    prefix: str,
    redis: aioredis.Redis,
) -> None:
    bot = await cron_bot(make_bot, endpoint)
    ticker = bot.app[TICKER]
    for _ in range(3):
        await ticker.tick()
    assert await requests_seen(endpoint) == []  # idle: no HTTP call
    cron = await redis.hgetall(f"{prefix}-state:cron")
    assert cron["idle_ticks"] == "3" and cron["last_tick"]

    await add_jobs(REDIS_URL, prefix, "a", ["one", "two", "fail"])
    await ticker.tick()
    [call] = await requests_seen(endpoint, 3)
    assert (call["queue"], call["status"], call["processed"], call["failed"]) == ("a", 200, 2, 1)
    [snap] = await service.snapshot(["a"])
    assert snap.counts["completed"] == 2 and snap.counts["failed"] == 1
    history = [json.loads(r) for r in await redis.lrange(f"{prefix}-state:cron:history", 0, -1)]
    assert [(h["queues"], h["status"], h["processed"], h["failed"]) for h in history] == [
        (["a"], 200, 2, 1)
    ]

    await cron_bot(make_bot, endpoint)  # a restart: the history lives in Redis
    run = await queueops("cron", "history", "--json", prefix=prefix)
    assert run[0] == 0 and json.loads(run[1])["runs"][0]["processed"] == 2


async def test_two_replicas_never_drain_the_same_tick(
    make_bot: MakeBot, endpoint: Endpoint, prefix: str
) -> None:
    one = await cron_bot(make_bot, endpoint)
    two = await cron_bot(make_bot, endpoint)
    await add_jobs(REDIS_URL, prefix, "b", ["x"])
    await asyncio.gather(one.app[TICKER].tick(), two.app[TICKER].tick())
    await two.app[TICKER].tick()
    calls = await requests_seen(endpoint, 2)
    assert len(calls) == 1 and calls[0]["queue"] == "b"


async def test_paused_cron_and_always_on_mode_do_not_drain(
    make_bot: MakeBot, endpoint: Endpoint, prefix: str, redis: aioredis.Redis
) -> None:
    bot = await cron_bot(make_bot, endpoint)
    await add_jobs(REDIS_URL, prefix, "a", ["x"])
    assert (await queueops("cron", "pause", prefix=prefix))[0] == 0
    await bot.app[TICKER].tick()
    await redis.hset(f"{prefix}-state:cron", mapping={"paused": "0", "mode": "always-on"})
    await bot.app[TICKER].tick()
    assert await requests_seen(endpoint) == []
    await redis.hset(f"{prefix}-state:cron", "mode", "cron")
    await bot.app[TICKER].tick()
    assert len(await requests_seen(endpoint, 3)) == 1


async def test_cadence_change_reaches_the_scheduler(
    make_bot: MakeBot, endpoint: Endpoint, prefix: str
) -> None:
    bot = await cron_bot(make_bot, endpoint)
    code, out, _ = await queueops("cron", "every", "15m", prefix=prefix)
    assert code == 0 and "every 15m" in out
    await bot.app[TICKER].tick()
    assert bot.app[TICKER].every_ms == 900_000
    code, out, _ = await queueops("cron", "status", "--json", prefix=prefix, DRAIN_URL=endpoint.url)
    status = json.loads(out)
    assert status["every"] == "15m" and status["everySeconds"] == 900 and status["enabled"]
    assert status["last"] is not None and status["next"] is not None


async def test_a_wrong_token_is_one_line_and_k_failures_raise_an_alert(
    make_bot: MakeBot,
    endpoint: Endpoint,
    slack: SlackStub,
    prefix: str,
    redis: aioredis.Redis,
) -> None:
    bot = await cron_bot(make_bot, endpoint, cron_secret="not-the-token")
    await add_jobs(REDIS_URL, prefix, "a", ["x"])
    for _ in range(3):
        await bot.app[TICKER].tick()
    calls = await requests_seen(endpoint, 2)
    assert [c["status"] for c in calls] == [401, 401, 401]
    history = [json.loads(r) for r in await redis.lrange(f"{prefix}-state:cron:history", 0, -1)]
    assert history[0]["status"] == 401 and "rejected the drain token" in history[0]["error"]
    [created] = await slack.wait_for("conversations.create")
    assert "drainfailing" in created.body["name"]

    code, _, err = await queueops(
        "drain", "a", prefix=prefix, DRAIN_URL=endpoint.url, CRON_SECRET="not-the-token"
    )
    assert code == 1 and err.strip().count("\n") == 0
    assert "the app rejected the drain token (401" in err


async def test_drain_command_and_its_errors(endpoint: Endpoint, prefix: str) -> None:
    await add_jobs(REDIS_URL, prefix, "a", ["x", "y"])
    code, out, err = await queueops(
        "drain", "--json", prefix=prefix, DRAIN_URL=endpoint.url, DRAIN_QUEUES_TOKEN=TOKEN
    )
    assert code == 0, err
    result = json.loads(out)["result"]
    assert result["queues"]["a"]["jobsProcessed"] == 2 and result["queues"]["b"]["idleAt"] == 0
    code, _, err = await queueops(
        "drain", "nope", prefix=prefix, DRAIN_URL=endpoint.url, DRAIN_QUEUES_TOKEN=TOKEN
    )
    assert code == 1 and "unknown queue 'nope' (QUEUEOPS_QUEUES: a, b)" in err
    code, _, err = await queueops(
        "drain", prefix=prefix, DRAIN_URL="http://127.0.0.1:1", DRAIN_QUEUES_TOKEN=TOKEN
    )
    assert code == 1 and "cannot reach the app at 127.0.0.1:1 (DRAIN_URL)" in err
    code, _, err = await queueops("drain", prefix=prefix)
    assert code == 1 and "DRAIN_URL is not set" in err
    code, _, err = await queueops("drain", "--max-duration", "soon", prefix=prefix)
    assert code == 2 and "--max-duration" in err


async def queueops(*args: str, prefix: str, **env: str) -> tuple[int, str, str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("QUEUEOPS_", "DRAIN", "CRON_", "SLACK_"))
    }
    env = {
        **clean,
        "REDIS_URL": REDIS_URL,
        "QUEUEOPS_PREFIX": prefix,
        "QUEUEOPS_STATE_PREFIX": f"{prefix}-state",
        "QUEUEOPS_QUEUES": "a,b",
        **env,
    }
    return await run_cli(args, env)


async def test_budget_uses_the_idle_tick_cost_the_bot_measured(
    make_bot: MakeBot, endpoint: Endpoint, prefix: str, redis: aioredis.Redis
) -> None:
    bot = await cron_bot(make_bot, endpoint)
    for _ in range(5):  # the first loads the script; the least of the last three is kept
        await bot.app[TICKER].tick()
    assert await redis.hget(f"{prefix}-state:cron", "idle_tick_cost") == "1"
    code, out, err = await queueops(
        "budget", "--json", prefix=prefix, REDIS_MONTHLY_COMMANDS="100000"
    )
    assert code == 0, err
    budget = json.loads(out)
    assert budget["idleTickCommands"] == 1 and budget["idleTickMeasured"] is True
    assert budget["cronIdlePerMonth"] == 8640 and budget["monthlyLimit"] == 100000
    assert budget["alwaysOnIdlePerMonth"] == 2 * 26 * 43200  # QUEUEOPS_QUEUES=a,b
    assert budget["fastestEvery"] == "52s"  # 2,592,000 s / 50,000 commands


async def test_a_clean_stop_hands_the_lease_over_at_once(
    make_bot: MakeBot, endpoint: Endpoint, prefix: str, redis: aioredis.Redis
) -> None:
    one = await cron_bot(make_bot, endpoint)
    two = await cron_bot(make_bot, endpoint)
    await one.app[TICKER].tick()  # one leads
    assert await redis.get(f"{prefix}-state:cron:lease")
    await one.close()  # a deploy: SIGTERM, graceful shutdown
    assert await redis.get(f"{prefix}-state:cron:lease") is None
    await add_jobs(REDIS_URL, prefix, "a", ["x"])
    await two.app[TICKER].tick()  # the very next tick of the other replica drains
    [call] = await requests_seen(endpoint, 3)
    assert call["queue"] == "a"


async def test_the_lease_lives_about_one_tick_and_follows_the_cadence(
    make_bot: MakeBot, endpoint: Endpoint, prefix: str, redis: aioredis.Redis
) -> None:
    bot = await make_bot(
        queues="a,b", drain_url=endpoint.url, cron_secret=TOKEN, drain_every_ms=10_000
    )
    await bot.app[TICKER].tick()
    assert 10_000 < await redis.pttl(f"{prefix}-state:cron:lease") <= 15_000  # a crash: ~1 tick
    assert (await queueops("cron", "every", "1h", prefix=prefix))[0] == 0
    await bot.app[TICKER].tick()  # learns the cadence
    await bot.app[TICKER].tick()  # renews with the new lease
    assert 3_600_000 < await redis.pttl(f"{prefix}-state:cron:lease") <= 3_660_000


async def test_a_drain_longer_than_the_lease_keeps_it(
    make_bot: MakeBot, prefix: str, redis: aioredis.Redis
) -> None:
    """The lease lives 3 s at a 1 s cadence; a 4 s drain renews it, so the other replica's
    ticks in the middle of the drain do not start a second one (nor do the leader's own)."""
    calls: list[float] = []

    async def slow_drain(request: web.Request) -> web.Response:
        calls.append(asyncio.get_running_loop().time())
        await asyncio.sleep(4)
        return web.json_response(
            {"ok": True, "durationMs": 4000, "totalProcessed": 1, "totalFailed": 0, "queues": {}}
        )

    app = web.Application()
    app.router.add_post("/api/v1/cron/drain-queues", slow_drain)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        settings = dict(drain_url=str(server.make_url("")), cron_secret=TOKEN, queues="a")
        one = await make_bot(drain_every_ms=1_000, **settings)
        two = await make_bot(drain_every_ms=1_000, **settings)
        await add_jobs(REDIS_URL, prefix, "a", ["x"])
        draining = asyncio.create_task(one.app[TICKER].tick())
        while not calls:  # noqa: ASYNC110  (the drain endpoint is the one to watch)
            await asyncio.sleep(0.05)
        await asyncio.sleep(3.3)  # past the lease's first life; both schedulers tick meanwhile
        await two.app[TICKER].tick()
        await draining
        assert len(calls) == 1
        assert await redis.get(f"{prefix}-state:cron:lease") is not None
    finally:
        await server.close()


async def test_a_cadence_stored_out_of_bounds_is_kept_within_a_day(
    make_bot: MakeBot, endpoint: Endpoint, prefix: str, redis: aioredis.Redis
) -> None:
    """Written before the 1s..1d bound existed (or by hand): the tick must not stop."""
    bot = await cron_bot(make_bot, endpoint)
    await redis.hset(f"{prefix}-state:cron", "every_ms", str(99_999 * 86_400_000))
    await bot.app[TICKER].tick()
    assert bot.app[TICKER].every_ms == 86_400_000
    await redis.hset(f"{prefix}-state:cron", "every_ms", "soon")
    await bot.app[TICKER].tick()
    assert bot.app[TICKER].every_ms == 86_400_000
    code, out, _ = await queueops("cron", "status", "--json", prefix=prefix, DRAIN_URL=endpoint.url)
    assert code == 0 and json.loads(out)["everySeconds"] == 300  # the CLI's DRAIN_EVERY, 5m


async def test_a_due_delayed_job_is_promoted_so_the_drain_runs_it(
    make_bot: MakeBot, endpoint: Endpoint, node: NodeCall, redis: aioredis.Redis, prefix: str
) -> None:
    """The endpoint looks for waiting work (getJobCounts), so a queue whose only work is a
    due delayed job would start no Worker: the cron moves such jobs to wait first, as a
    Worker's moveToActive would (bot/queues/bullmq/lua/promote_due.lua). A job not yet due stays."""
    bot = await cron_bot(make_bot, endpoint)
    await node(
        "add",
        queue="a",
        jobs=[
            {"name": "soon", "opts": {"delay": 200}},
            {"name": "later", "opts": {"delay": 600_000}},
        ],
    )
    await asyncio.sleep(0.4)
    await bot.app[TICKER].tick()
    [call] = await requests_seen(endpoint, 3)
    assert (call["queue"], call["processed"]) == ("a", 1)
    counts = (await node("counts", queues=["a"]))["a"]
    assert (counts["completed"], counts["delayed"], counts["waiting"]) == (1, 1, 0)
    events = await redis.xrange(f"{prefix}:a:events")
    assert any(e[1].get("event") == "waiting" and e[1].get("prev") == "delayed" for e in events)


async def test_the_drain_command_promotes_due_delayed_jobs_too(
    endpoint: Endpoint, node: NodeCall, prefix: str
) -> None:
    await node("add", queue="b", jobs=[{"name": "soon", "opts": {"delay": 100}}])
    await asyncio.sleep(0.3)
    code, out, err = await queueops(
        "drain", "b", "--json", prefix=prefix, DRAIN_URL=endpoint.url, CRON_SECRET=TOKEN
    )
    assert code == 0, err
    assert json.loads(out)["result"]["totalProcessed"] == 1
