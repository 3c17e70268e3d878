"""Benchmark: instant drains against the plain cron and always-on Workers, in one run.

    .venv/bin/python bench/instant_drain.py [--idle-minutes 10] [--every 5m] [--jobs 100]
                                            [--spread-seconds 300]

Three private redis-servers, side by side, each with the same 5 queues:
1. queueops in cron mode with instant drains (build_app, as `queueops serve` runs it: the
   tick every --every, the watch on the queues' markers) and the real drain endpoint
   (tests/interop/drain-endpoint.mjs: npm bullmq Workers started per drain);
2. the same with DRAIN_INSTANT=0: the plain cron, a job waits for the next tick;
3. 5 always-on npm bullmq Workers (WORKER_INPROCESS=1).
First an idle window: Redis commands each server received (MONITOR, every client: the bot,
the endpoint, the Workers). Then --jobs jobs added at random times over --spread-seconds
(the same times and queues for all three), and each job's pickup latency: its finishedOn
minus its timestamp, from the job's own hash. Needs tests/interop's npm bullmq
(./scripts/test installs it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from aiohttp import web
from bullmq import Queue
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from command_counter import count_commands  # noqa: E402

from bot.config import load_settings  # noqa: E402
from bot.durations import format_duration_ms, parse_duration_ms  # noqa: E402
from bot.embedded_redis import embedded_redis, free_port  # noqa: E402
from bot.http_app import INSTANT, TICKER, build_app  # noqa: E402

QUEUES = ["batch-jobs", "dsar-jobs", "journey-jobs", "retrain-jobs", "seed-jobs"]
INTEROP = ROOT / "tests" / "interop"
TOKEN = "bench-token"
MONTH_MS = 30 * 24 * 3_600_000


@contextlib.asynccontextmanager
async def drain_endpoint(url: str) -> AsyncIterator[str]:
    """tests/interop/drain-endpoint.mjs on `url`'s Redis; yields its base URL."""
    env = {
        **os.environ,
        "REDIS_URL": url,
        "PREFIX": "bull",
        "QUEUES": ",".join(QUEUES),
        "PORT": "0",
        "CRON_SECRET": TOKEN,
    }
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(INTEROP / "drain-endpoint.mjs"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 15))

    async def discard() -> None:
        assert proc.stdout is not None
        while await proc.stdout.readline():
            pass

    reader = asyncio.create_task(discard())
    try:
        yield f"http://127.0.0.1:{first['listening']}"
    finally:
        proc.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 15)
        reader.cancel()


@contextlib.asynccontextmanager
async def queueops_bot(url: str, endpoint: str, every_ms: int, instant: bool) -> AsyncIterator[Any]:
    settings = load_settings(
        redis_url=url,
        queues=",".join(QUEUES),
        drain_url=endpoint,
        cron_secret=TOKEN,
        drain_every_ms=every_ms,
        drain_instant=instant,
        port=free_port(),
    )
    app = await build_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.port).start()
    await app[TICKER].tick()  # the first tick at once: the lease, and the watch (instant)
    try:
        yield app
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def always_on_workers(url: str, seconds: float) -> AsyncIterator[None]:
    args = json.dumps({"prefix": "bull", "queues": QUEUES, "seconds": int(seconds)})
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(INTEROP / "bullmq-cli.mjs"),
        "idle-workers",
        args,
        stdout=asyncio.subprocess.DEVNULL,
        env={**os.environ, "REDIS_URL": url, "BULLMQ_CLI_TIMEOUT_MS": str(int(seconds * 2000))},
    )
    await asyncio.sleep(3)  # the Workers are up and blocking
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 15)


async def add_on_schedule(url: str, schedule: list[tuple[float, str]]) -> None:
    """Add one job per (seconds from now, queue), each at its time."""
    queues = {name: Queue(name, {"prefix": "bull", "connection": url}) for name in QUEUES}
    started = time.monotonic()
    try:
        for n, (at_s, name) in enumerate(schedule):
            await asyncio.sleep(max(0.0, at_s - (time.monotonic() - started)))
            await queues[name].add("bench", {"n": n})
    finally:
        for q in queues.values():
            await q.close()


async def latencies(url: str, count: int, deadline_s: float) -> list[float]:
    """Once `count` jobs are completed (or the deadline passes): each one's finishedOn
    minus its timestamp, in ms."""
    redis = Redis.from_url(url, decode_responses=True)
    try:
        until = time.monotonic() + deadline_s
        while time.monotonic() < until:
            done = sum([await redis.zcard(f"bull:{q}:completed") for q in QUEUES])
            if done >= count:
                break
            await asyncio.sleep(2)
        out = []
        for q in QUEUES:
            for job_id in await redis.zrange(f"bull:{q}:completed", 0, -1):
                ts, fin = await redis.hmget(f"bull:{q}:{job_id}", "timestamp", "finishedOn")
                if ts and fin:
                    out.append(float(fin) - float(ts))
        return sorted(out)
    finally:
        await redis.aclose()


def summary(ms: list[float], wanted: int) -> dict[str, Any]:
    if not ms:
        return {"processed": 0, "of": wanted}
    return {
        "processed": len(ms),
        "of": wanted,
        "p50Ms": round(statistics.median(ms), 1),
        "p99Ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1),
        "maxMs": round(ms[-1], 1),
    }


async def contestant(
    name: str, url: str, args: argparse.Namespace, schedule: list[tuple[float, str]]
) -> dict[str, Any]:
    every_ms = parse_duration_ms(args.every)
    idle_s = args.idle_minutes * 60
    wait_s = args.spread_seconds + every_ms / 1000 + 60
    async with contextlib.AsyncExitStack() as stack:
        instant_app = None
        if name == "always-on":
            await stack.enter_async_context(always_on_workers(url, idle_s + wait_s + 30))
        else:
            endpoint = await stack.enter_async_context(drain_endpoint(url))
            app = await stack.enter_async_context(
                queueops_bot(url, endpoint, every_ms, instant=name == "instant")
            )
            instant_app = app.get(INSTANT)
        async with count_commands(url) as tally:
            await asyncio.sleep(idle_s)
        idle = {
            "commands": tally.client_total,
            "byCommand": dict(tally.client),
            "perCadence": round(tally.client_total * every_ms / (idle_s * 1000), 2),
            "perMonth": round(tally.client_total * MONTH_MS / (idle_s * 1000)),
        }
        adding = asyncio.create_task(add_on_schedule(url, schedule))
        ms = await latencies(url, len(schedule), wait_s)
        await adding
        report: dict[str, Any] = {"idle": idle, "latency": summary(ms, len(schedule))}
        if instant_app is not None:
            report["watch"] = {
                "blocks": instant_app.blocks,
                "wakes": instant_app.wakes,
                "drains": instant_app.drains,
                "emptyWakes": instant_app.empty_wakes,
            }
        return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle-minutes", type=float, default=10)
    parser.add_argument("--every", default="5m")
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--spread-seconds", type=float, default=300)
    args = parser.parse_args()
    if not (INTEROP / "node_modules" / "bullmq").is_dir():
        raise SystemExit("bench: run ./scripts/test once first (it installs npm bullmq)")
    rng = random.Random(7)
    times = sorted(rng.uniform(0, args.spread_seconds) for _ in range(args.jobs))
    schedule = [(t, rng.choice(QUEUES)) for t in times]
    names = ["instant", "plain-cron", "always-on"]

    def servers(stack: ExitStack) -> Iterator[str]:
        for _ in names:
            url, _what = stack.enter_context(embedded_redis())
            yield url

    async def run() -> dict[str, Any]:
        with ExitStack() as stack:
            urls = list(servers(stack))
            results = await asyncio.gather(
                *(contestant(n, u, args, schedule) for n, u in zip(names, urls, strict=True))
            )
        return dict(zip(names, results, strict=True))

    report = {
        "every": format_duration_ms(parse_duration_ms(args.every)),
        "idleMinutes": args.idle_minutes,
        "jobs": args.jobs,
        "spreadSeconds": args.spread_seconds,
        "results": asyncio.run(run()),
    }
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "instant_drain.json").write_text(json.dumps(report, indent=2))
    print(f"{'':<12} {'idle commands':>14} {'per cadence':>12} {'a month':>11}  latency p50 / p99")
    for name, r in report["results"].items():
        lat = r["latency"]
        shown = "none processed"
        if lat["processed"]:
            shown = f"{lat['p50Ms'] / 1000:.2f} s / {lat['p99Ms'] / 1000:.2f} s"
            shown += f" ({lat['processed']}/{lat['of']})"
        idle = r["idle"]
        print(
            f"{name:<12} {idle['commands']:>14,} {idle['perCadence']:>12} {idle['perMonth']:>11,}  "
            f"{shown}"
        )


if __name__ == "__main__":
    main()
