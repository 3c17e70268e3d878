"""Benchmark: 50 concurrent signed `/queue snapshot` requests to the real app.

    .venv/bin/python bench/slack_ack.py [--requests 50]

Runs `build_app` (real Bolt, real signature checks) on a loopback port, a Slack stand-in
(tests/slack_stub.py) for the Web API and the response URLs, and a private redis-server
holding 5 queues with 1,000 waiting jobs each. Reports p50/p99 of the time to the ack (the
HTTP answer Slack waits at most 3 s for) and to the final reply (the response_url POST).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
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
from bot.http_app import build_app  # noqa: E402
from bot.queues.store import QueueStore  # noqa: E402

SECRET = "bench-signing-secret"
QUEUES = ["batch-jobs", "dsar-jobs", "journey-jobs", "retrain-jobs", "seed-jobs"]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000, 1)


async def run(n: int) -> dict[str, Any]:
    stub = SlackStub()
    await stub.start()
    with embedded_redis() as (url, _):
        redis = Redis.from_url(url, decode_responses=True)
        store = QueueStore(redis)
        for q in QUEUES:
            await store.bullmq(q).addBulk([{"name": "job", "data": {"i": i}} for i in range(1000)])
        settings = load_settings(
            redis_url=url,
            slack_bot_token="xoxb-bench",
            slack_signing_secret=SECRET,
            slack_api_url=stub.api_url,
            queues=",".join(QUEUES),
            operator_rate_per_minute=10_000,
        )
        port = free_port()
        runner = web.AppRunner(await build_app(settings), access_log=None)
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
            ts = str(int(time.time()))
            sig = hmac.new(SECRET.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256)
            headers = {
                "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": "v0=" + sig.hexdigest(),
                "Content-Type": "application/x-www-form-urlencoded",
            }
            started = time.perf_counter()
            sent[f"respond:b{i}"] = started
            async with http.post(
                f"http://127.0.0.1:{port}/slack/events", data=body, headers=headers
            ) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            acks.append(time.perf_counter() - started)

        async with aiohttp.ClientSession() as http:
            await one(http, -1)  # warm up: auth.test, script loading
            await stub.wait_for("respond:b-1")
            acks.clear()
            sent.clear()
            await asyncio.gather(*(one(http, i) for i in range(n)))
            for i in range(n):
                await stub.wait_for(f"respond:b{i}", within=30)
        finals = [c.at - sent[c.method] for c in stub.calls if c.method in sent]
        await runner.cleanup()
        await redis.aclose()
    await stub.close()
    return {
        "requests": n,
        "ackP50Ms": pct(acks, 0.5),
        "ackP99Ms": pct(acks, 0.99),
        "ackMaxMs": pct(acks, 1.0),
        "replyP50Ms": pct(finals, 0.5),
        "replyP99Ms": pct(finals, 0.99),
        "replyMaxMs": pct(finals, 1.0),
        "meanReplyMs": round(statistics.mean(finals) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50)
    report = asyncio.run(run(parser.parse_args().requests))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "slack_ack.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
