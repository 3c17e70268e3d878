"""Benchmark: what the tick costs Redis with update reminders on (issue 15, section 4), with
0 and with 3 open incidents.

    .venv/bin/python bench/idle_tick_incidents.py [--ticks 20]

On a private redis-server with 5 empty queues, `queueops serve`'s app (build_app, Slack on,
against the tests' Web API stand-in, INCIDENT_UPDATE_EVERY at its default), its tick driven
by hand (the cadence is an hour, so no other tick runs), counted with MONITOR as
bench/idle_tick.py counts (bench/command_counter.py): client commands per tick

1. with no open incident (the goal: 1, the probe script),
2. with 3 open incidents declared (`incident declare`), between two looks,
3. on the tick that looks at all 3 (their look moved to now, as it comes once a minute).

The daily digest is on too (INCIDENT_DIGEST_AT six hours ahead: not due), and the anchor,
measured in the same run on the same server, is the same app with Slack off (no
incidents, reminders or digest at all): the ratio says what incidents add to an idle tick.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from command_counter import count_commands  # noqa: E402
from slack_stub import SlackStub  # noqa: E402

from bot.config import load_settings  # noqa: E402
from bot.embedded_redis import embedded_redis, free_port  # noqa: E402
from bot.http_app import DISPATCHER, TICKER, build_app  # noqa: E402

QUEUES = ["batch-jobs", "dsar-jobs", "journey-jobs", "retrain-jobs", "seed-jobs"]
STATE = "qo-bench"


async def ticks(app: web.Application, n: int, url: str) -> dict[str, Any]:
    ticker = app[TICKER]
    async with count_commands(url) as tally:
        for _ in range(n):
            await ticker.tick()
    return {
        "ticks": n,
        "clientCommands": tally.client_total,
        "byCommand": dict(tally.client),
        "perTick": round(tally.client_total / n, 3),
    }


async def run(n: int) -> dict[str, Any]:
    slack = SlackStub()
    await slack.start()
    try:
        with embedded_redis() as (url, _):
            plain = await build_app(
                load_settings(
                    redis_url=url,
                    queues=",".join(QUEUES),
                    state_prefix=f"{STATE}-plain",
                    drain_every_ms=3_600_000,
                    port=free_port(),
                )
            )
            plain_runner = web.AppRunner(plain, access_log=None)
            await plain_runner.setup()
            try:
                await plain[TICKER].tick()  # first use: the probe script is loaded
                anchor = await ticks(plain, n, url)
            finally:
                await plain_runner.cleanup()
            not_due = (datetime.now(tz=UTC) + timedelta(hours=6)).strftime("%H:%M")
            settings = load_settings(
                redis_url=url,
                queues=",".join(QUEUES),
                state_prefix=STATE,
                drain_every_ms=3_600_000,
                slack_bot_token="xoxb-bench",
                slack_signing_secret="bench",
                slack_api_url=slack.api_url,
                incident_updates_channel="C0STAKEHOLDERS",
                incident_digest_at=not_due,
                port=free_port(),
            )
            app = await build_app(settings)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", settings.port).start()
            try:
                ticker = app[TICKER]
                await ticker.tick()  # first use: the probe script is loaded
                none_open = await ticks(app, n, url)
                desk = app[DISPATCHER].incidents
                assert desk is not None
                for i in range(3):
                    await desk.declare(f"Bench incident {i}", QUEUES[i], "sev2", "bench")
                await ticker.tick()  # the first look at each: scored for the next
                three_open = await ticks(app, n, url)
                redis = app[DISPATCHER].service.redis
                members = await redis.zrange(f"{STATE}:incidents:open", 0, -1)
                await redis.zadd(f"{STATE}:incidents:open", {str(m): 0 for m in members}, xx=True)
                looking = await ticks(app, 1, url)
            finally:
                await runner.cleanup()
    finally:
        await slack.close()
    return {
        "anchorSlackOff": anchor,
        "noOpenIncidents": none_open,
        "threeOpenBetweenLooks": three_open,
        "threeOpenLookTick": looking,
        "ratioNoneOpenToAnchor": round(none_open["perTick"] / anchor["perTick"], 3),
        "ratioThreeOpenToAnchor": round(three_open["perTick"] / anchor["perTick"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=20)
    report = asyncio.run(run(parser.parse_args().ticks))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "idle_tick_incidents.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
