"""Benchmark: what an idle hour costs. queueops' drain cron against always-on workers.

    .venv/bin/python bench/idle_tick.py [--seconds 30]

On a private redis-server with 5 empty queues , counted with MONITOR:
1. `queueops serve` (build_app: the APScheduler tick, the drain cron in cron mode with
   DRAIN_URL set, the watcher, the alert sweep) ticking every second: Redis commands per
   idle tick, and HTTP requests to the app (a local server that counts them);
2. 5 always-on npm bullmq Workers (WORKER_INPROCESS=1) on the same 5 queues, for
   the same time (tests/interop's Node; run ./scripts/test once first).
Reports both, per month at a 5-minute cadence, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from command_counter import count_commands  # noqa: E402

from bot.config import load_settings  # noqa: E402
from bot.embedded_redis import embedded_redis, free_port  # noqa: E402
from bot.http_app import TICKER, build_app  # noqa: E402

QUEUES = ["batch-jobs", "dsar-jobs", "journey-jobs", "retrain-jobs", "seed-jobs"]
MONTH_MIN = 30 * 24 * 60


async def queueops_idle(url: str, seconds: int) -> dict[str, Any]:
    hits = {"n": 0}

    async def drain(request: web.Request) -> web.Response:
        hits["n"] += 1
        return web.json_response(
            {"ok": True, "durationMs": 0, "totalProcessed": 0, "totalFailed": 0, "queues": {}}
        )

    app_port = free_port()
    fake_app = web.Application()
    fake_app.router.add_post("/api/v1/cron/drain-queues", drain)
    app_runner = web.AppRunner(fake_app, access_log=None)
    await app_runner.setup()
    await web.TCPSite(app_runner, "127.0.0.1", app_port).start()

    settings = load_settings(
        redis_url=url,
        queues=",".join(QUEUES),
        drain_url=f"http://127.0.0.1:{app_port}",
        cron_secret="bench",
        drain_every_ms=1000,
        port=free_port(),
    )
    app = await build_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.port).start()
    ticker = app[TICKER]
    await asyncio.sleep(3)  # start-up: scripts loaded, lease taken
    start_ticks = ticker.ticks
    async with count_commands(url) as tally:
        await asyncio.sleep(seconds)
        ticks = ticker.ticks - start_ticks
    await runner.cleanup()
    await app_runner.cleanup()
    return {
        "ticks": ticks,
        "clientCommands": tally.client_total,
        "byCommand": dict(tally.client),
        "insideScripts": tally.script_total,
        "perTick": round(tally.client_total / max(ticks, 1), 3),
        "httpRequests": hits["n"],
    }


async def workers_idle(url: str, seconds: int) -> dict[str, Any]:
    cli = ROOT / "tests" / "interop" / "bullmq-cli.mjs"
    if not (ROOT / "tests" / "interop" / "node_modules" / "bullmq").is_dir():
        raise SystemExit("bench: run ./scripts/test once first (it installs npm bullmq)")
    # Workers run longer than the window, which opens once they have started: steady state.
    args = json.dumps({"prefix": "bull", "queues": QUEUES, "seconds": seconds + 6})
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(cli),
        "idle-workers",
        args,
        stdout=asyncio.subprocess.DEVNULL,
        env={**os.environ, "REDIS_URL": url, "BULLMQ_CLI_TIMEOUT_MS": str(seconds * 3000)},
    )
    await asyncio.sleep(3)
    async with count_commands(url) as tally:
        await asyncio.sleep(seconds)
    await proc.wait()
    return {
        "workers": len(QUEUES),
        "seconds": seconds,
        "clientCommands": tally.client_total,
        "byCommand": dict(tally.client),
        "insideScripts": tally.script_total,
        "perMinute": round(tally.client_total * 60 / seconds, 1),
    }


async def run(seconds: int) -> dict[str, Any]:
    with embedded_redis() as (url, _):
        ours = await queueops_idle(url, seconds)
        theirs = await workers_idle(url, seconds)
    ours_month = ours["perTick"] * MONTH_MIN / 5  # one tick per 5 minutes
    theirs_month = theirs["perMinute"] * MONTH_MIN
    return {
        "queueops": ours,
        "alwaysOnWorkers": theirs,
        "perMonthAt5MinCadence": {
            "queueops": round(ours_month),
            "alwaysOnWorkers": round(theirs_month),
            "ratio": round(theirs_month / max(ours_month, 1)),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=30)
    report = asyncio.run(run(parser.parse_args().seconds))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "idle_tick.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
