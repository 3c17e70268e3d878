"""Benchmark: Redis commands per `snapshot` and per `probe`, and a bulk quarantine's calls.

    .venv/bin/python bench/redis_commands.py [--sizes 0,1000,100000] [--bulk 10000]

On a private redis-server: 5 queues with N waiting jobs each (made by PyPI bullmq's
addBulk), for each N the commands one snapshot and one probe send (counted with MONITOR),
then a bulk quarantine of `--bulk` failed jobs (made by a real npm bullmq Worker, from
tests/interop) with every script call's time measured by the server (SLOWLOG at 0 us:
how long each call kept Redis busy). Writes bench/results/redis_commands.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from command_counter import count_commands  # noqa: E402

from bot.embedded_redis import embedded_redis  # noqa: E402
from bot.patterns import compile_user_pattern  # noqa: E402
from bot.queues.bullmq.store import QueueStore  # noqa: E402
from bot.queues.keys import QueueRef  # noqa: E402
from bot.queues.service import QueueService  # noqa: E402

QUEUES = ["batch-jobs", "dsar-jobs", "journey-jobs", "retrain-jobs", "seed-jobs"]
PREFIX = "bull"
SLOWLOG_US = 1000


async def fill(store: QueueStore, queue: str, target: int) -> None:
    q = store.bullmq(QueueRef(PREFIX, queue))
    have = int(await store.redis.llen(QueueRef(PREFIX, queue).key("wait")))
    while have < target:
        n = min(2000, target - have)
        await q.addBulk([{"name": f"kind-{i % 7}", "data": {"i": have + i}} for i in range(n)])
        have += n


async def measure_reads(url: str, sizes: list[int]) -> list[dict[str, Any]]:
    redis = Redis.from_url(url, decode_responses=True)
    service = QueueService(redis, prefixes=[PREFIX], queues=QUEUES)
    for queue in QUEUES:  # every queue exists (meta), empty
        await service.store.bullmq(service.ref(queue)).add("warm", {})
    for queue in QUEUES:
        await redis.delete(service.ref(queue).key("wait"))
    await service.snapshot()  # load the scripts once: steady state is what we count
    await service.probe()
    rows = []
    for size in sizes:
        for queue in QUEUES:
            await fill(service.store, queue, size)
        async with count_commands(url) as snap:
            await service.snapshot()
        async with count_commands(url) as probe:
            await service.probe()
        rows.append(
            {
                "waitingPerQueue": size,
                "snapshot": {
                    "clientCommands": snap.client_total,
                    "byCommand": dict(snap.client),
                    "insideScripts": snap.script_total,
                },
                "probe": {
                    "clientCommands": probe.client_total,
                    "byCommand": dict(probe.client),
                    "insideScripts": probe.script_total,
                },
            }
        )
    await redis.aclose()
    return rows


def make_failed(url: str, queue: str, count: int) -> None:
    cli = ROOT / "tests" / "interop" / "bullmq-cli.mjs"
    if not (ROOT / "tests" / "interop" / "node_modules" / "bullmq").is_dir():
        raise SystemExit("bench: run ./scripts/test once first (it installs npm bullmq)")
    args = json.dumps({"prefix": PREFIX, "queue": queue, "count": count, "reason": "ECONNRESET"})
    subprocess.run(
        ["node", str(cli), "fail", args],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "REDIS_URL": url, "BULLMQ_CLI_TIMEOUT_MS": "600000"},
    )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def measure_bulk(url: str, count: int) -> dict[str, Any]:
    queue = "bulk-jobs"
    make_failed(url, queue, count)
    redis = Redis.from_url(url, decode_responses=True)
    service = QueueService(redis, prefixes=[PREFIX], queues=[queue])
    # Redis 7 logs the commands a script runs too; at a 1 ms threshold only slow calls are
    # kept, so the log cannot overflow and the slowest script call is in it.
    await redis.config_set("slowlog-log-slower-than", SLOWLOG_US)
    await redis.config_set("slowlog-max-len", 10_000)
    await redis.slowlog_reset()
    # The move calls go in pipelines (bot/queues/bullmq/batching.py), so they are counted from the
    # result and timed by Redis itself; bench/scale.py times the rounds against npm bullmq.
    started = time.perf_counter()
    result = await service.quarantine_matching(
        queue, compile_user_pattern("ECONNRESET"), limit=count, reason="bench", actor="bench"
    )
    wall_s = time.perf_counter() - started
    slow = [
        int(e["duration"])
        for e in await redis.slowlog_get(10_000)
        if _text(e["command"]).upper().startswith("EVALSHA")
    ]
    await redis.aclose()
    return {
        "failedJobs": count,
        "moved": len(result.moved),
        "batches": result.batches,
        "scriptCalls": result.batches,
        "serverSlowestMs": max(slow) / 1000 if slow else f"< {SLOWLOG_US / 1000}",
        "callsOver10msServer": sum(1 for us in slow if us > 10_000),
        "wallSeconds": round(wall_s, 2),
    }


async def run(sizes: list[int], bulk: int) -> dict[str, Any]:
    with embedded_redis() as (url, _):
        reads = await measure_reads(url, sizes)
    with embedded_redis() as (url, _):
        bulk_result = await measure_bulk(url, bulk)
    return {"queues": len(QUEUES), "reads": reads, "bulkQuarantine": bulk_result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="0,1000,100000")
    parser.add_argument("--bulk", type=int, default=10_000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    report = asyncio.run(run(sizes, args.bulk))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "redis_commands.json").write_text(json.dumps(report, indent=2))
    print(
        f"{'waiting/queue':>14} {'snapshot cmds':>14} {'(in scripts)':>13} "
        f"{'probe cmds':>11} {'(in scripts)':>13}"
    )
    for row in report["reads"]:
        print(
            f"{row['waitingPerQueue']:>14} {row['snapshot']['clientCommands']:>14} "
            f"{row['snapshot']['insideScripts']:>13} {row['probe']['clientCommands']:>11} "
            f"{row['probe']['insideScripts']:>13}"
        )
    b = report["bulkQuarantine"]
    print(
        f"bulk quarantine: {b['moved']}/{b['failedJobs']} failed jobs, {b['batches']} batches, "
        f"{b['scriptCalls']} script calls in {b['wallSeconds']} s; slowest call "
        f"{b['serverSlowestMs']} ms on the server ({b['callsOver10msServer']} over 10 ms)"
    )


if __name__ == "__main__":
    main()
