"""Benchmark: 50 concurrent signed `/queue snapshot` requests to the real app.

    .venv/bin/python bench/slack_ack.py [--requests 50]

Runs `serving_app` (the app as `serve` runs it: signature checks, the Dispatcher, Bolt for
what is Bolt's) on a loopback port, a Slack stand-in (tests/slack_stub.py) for the Web API
and the response URLs, and a private redis-server
holding 5 queues with 1,000 waiting jobs each. Reports p50/p99 of the time to the ack (the
HTTP answer Slack waits at most 3 s for) and to the final reply (the response_url POST).

The anchor, in the same run and the same way: a bare aiohttp handler that checks the Slack
signature (HMAC-SHA256 over v0:timestamp:body) and answers 200, nothing else; its burst of n
runs just before and just after queueops' burst, and its percentiles pool the two. The goal
(issue 9): queueops' ack p50 within 2x of the anchor's, final reply p50 <= 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import hmac
import json
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from slack_stub import SlackStub  # noqa: E402

from bot.config import load_settings  # noqa: E402
from bot.embedded_redis import embedded_redis, free_port  # noqa: E402
from bot.http_app import serving_app  # noqa: E402
from bot.queues.bullmq.store import QueueStore  # noqa: E402
from bot.queues.keys import QueueRef  # noqa: E402

SECRET = "bench-signing-secret"
QUEUES = ["batch-jobs", "dsar-jobs", "journey-jobs", "retrain-jobs", "seed-jobs"]


def signed(body: str) -> dict[str, str]:
    ts = str(int(time.time()))
    sig = hmac.new(SECRET.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256)
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": "v0=" + sig.hexdigest(),
        "Content-Type": "application/x-www-form-urlencoded",
    }


async def anchor_handler(request: web.Request) -> web.Response:
    """What any Slack endpoint must do at least: read the body, check the signature."""
    body = await request.read()
    ts = request.headers.get("X-Slack-Request-Timestamp", "")
    expected = hmac.new(SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    given = request.headers.get("X-Slack-Signature", "")
    if not hmac.compare_digest("v0=" + expected.hexdigest(), given):
        return web.Response(status=401)
    return web.Response(status=200)


async def anchor_acks(http: aiohttp.ClientSession, n: int) -> list[float]:
    app = web.Application()
    app.router.add_post("/slack/events", anchor_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    acks: list[float] = []

    async def one(i: int) -> None:
        body = urlencode({"command": "/queue", "text": "snapshot", "user_id": f"U{i}"})
        started = time.perf_counter()
        async with http.post(
            f"http://127.0.0.1:{port}/slack/events", data=body, headers=signed(body)
        ) as resp:
            await resp.read()
            assert resp.status == 200, resp.status
        acks.append(time.perf_counter() - started)

    await one(-1)
    acks.clear()
    await asyncio.gather(*(one(i) for i in range(n)))
    await runner.cleanup()
    return acks


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000, 1)


async def run(n: int, profile: cProfile.Profile | None = None) -> dict[str, Any]:
    stub = SlackStub()
    await stub.start()
    with embedded_redis() as (url, _):
        redis = Redis.from_url(url, decode_responses=True)
        store = QueueStore(redis)
        for q in QUEUES:
            await store.bullmq(QueueRef("bull", q)).addBulk(
                [{"name": "job", "data": {"i": i}} for i in range(1000)]
            )
        settings = load_settings(
            redis_url=url,
            slack_bot_token="xoxb-bench",
            slack_signing_secret=SECRET,
            slack_api_url=stub.api_url,
            queues=",".join(QUEUES),
            operator_rate_per_minute=10_000,
        )
        port = free_port()
        runner = web.AppRunner(await serving_app(settings), access_log=None)  # as `serve`
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        acks: list[float] = []
        sent: dict[str, float] = {}

        async def one(http: aiohttp.ClientSession, i: int) -> None:
            body = urlencode(
                {
                    "command": "/queue",
                    "text": "snapshot",
                    "user_id": f"U{i}",
                    "team_id": "T1",
                    "channel_id": "C1",
                    "response_url": stub.response_url(f"b{i}"),
                }
            )
            headers = signed(body)
            started = time.perf_counter()
            sent[f"respond:b{i}"] = started
            async with http.post(
                f"http://127.0.0.1:{port}/slack/events", data=body, headers=headers
            ) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            acks.append(time.perf_counter() - started)

        async with aiohttp.ClientSession() as http:
            # The anchor's burst before and after ours, pooled: load from elsewhere on the
            # machine drifts during a run, and one side measured later would catch more of it.
            anchor = await anchor_acks(http, n)
            await one(http, -1)  # warm up: script loading
            await stub.wait_for("respond:b-1")
            acks.clear()
            sent.clear()
            if profile is not None:
                profile.enable()
            await asyncio.gather(*(one(http, i) for i in range(n)))
            for i in range(n):
                await stub.wait_for(f"respond:b{i}", within=30)
            if profile is not None:
                profile.disable()
            anchor += await anchor_acks(http, n)
        finals = [c.at - sent[c.method] for c in stub.calls if c.method in sent]
        await runner.cleanup()
        await redis.aclose()
    await stub.close()
    return {
        "requests": n,
        "anchorAckP50Ms": pct(anchor, 0.5),
        "anchorAckP99Ms": pct(anchor, 0.99),
        "ackP50Ms": pct(acks, 0.5),
        "ackP99Ms": pct(acks, 0.99),
        "ackMaxMs": pct(acks, 1.0),
        "replyP50Ms": pct(finals, 0.5),
        "replyP99Ms": pct(finals, 0.99),
        "replyMaxMs": pct(finals, 1.0),
        "meanReplyMs": round(statistics.mean(finals) * 1000, 1),
        "ackP50OverAnchor": round(pct(acks, 0.5) / max(pct(anchor, 0.5), 0.1), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the concurrent phase (slower)"
    )
    args = parser.parse_args()
    profile = cProfile.Profile() if args.profile else None
    report = asyncio.run(run(args.requests, profile))
    if profile is not None:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(r"bot/|slack_|aiohttp/", 40)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "slack_ack.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
