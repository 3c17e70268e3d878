"""Benchmark: 1,000 Alertmanager notifications for one alert group within 60 s.

    .venv/bin/python bench/alert_burst.py [--notifications 1000] [--concurrency 20]

The real app (`build_app`) on loopback, the Slack stand-in of the tests, a private
redis-server. Reports intake latency (p50/p99/max), how many channels were opened (must be
1), the Slack calls made by method, and whether every notification was stored and handled
(stream length, pending entries, the incident's notification count).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

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

FIRING = ROOT / "tests" / "fixtures" / "alertmanager" / "firing.json"
TOKEN = "bench-token"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000, 1)


async def run(n: int, concurrency: int) -> dict[str, Any]:
    body = json.dumps(json.loads(FIRING.read_text())["body"])
    stub = SlackStub()
    await stub.start()
    with embedded_redis() as (url, _):
        settings = load_settings(
            redis_url=url,
            slack_bot_token="xoxb-bench",
            slack_signing_secret="s",
            slack_api_url=stub.api_url,
            alert_webhook_token=TOKEN,
            incident_invite="U1,U2",
        )
        port = free_port()
        runner = web.AppRunner(await build_app(settings), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        latencies: list[float] = []
        statuses: Counter[int] = Counter()
        sem = asyncio.Semaphore(concurrency)
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

        async def one(http: aiohttp.ClientSession) -> None:
            async with sem:
                started = time.perf_counter()
                async with http.post(
                    f"http://127.0.0.1:{port}/alerts/alertmanager", data=body, headers=headers
                ) as resp:
                    await resp.read()
                    statuses[resp.status] += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(one(http) for _ in range(n)))
        sent_in = time.perf_counter() - started
        redis = Redis.from_url(url, decode_responses=True)
        stream = f"{settings.state_prefix}:alerts"
        for _ in range(600):
            info = await redis.xpending(stream, "incidents")
            groups = await redis.xinfo_groups(stream)
            if info["pending"] == 0 and groups and groups[0].get("lag") == 0:
                break
            await asyncio.sleep(0.05)
        handled_in = time.perf_counter() - started
        incident_keys = [k async for k in redis.scan_iter(match="queueops:incident:*")]
        notifications = [int(await redis.hget(k, "notifications") or 0) for k in incident_keys]
        report = {
            "notifications": n,
            "concurrency": concurrency,
            "statuses": dict(statuses),
            "sentSeconds": round(sent_in, 2),
            "handledSeconds": round(handled_in, 2),
            "intakeP50Ms": pct(latencies, 0.5),
            "intakeP99Ms": pct(latencies, 0.99),
            "intakeMaxMs": pct(latencies, 1.0),
            "channelsOpened": len(stub.of("conversations.create")),
            "slackCalls": dict(Counter(c.method for c in stub.calls)),
            "streamLength": await redis.xlen(stream),
            "pendingAfter": (await redis.xpending(stream, "incidents"))["pending"],
            "incidentNotificationCount": notifications,
        }
        await redis.aclose()
        await runner.cleanup()
    await stub.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notifications", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    report = asyncio.run(run(args.notifications, args.concurrency))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "alert_burst.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
