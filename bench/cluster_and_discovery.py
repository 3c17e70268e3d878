"""Benchmark: snapshot and probe commands on a Redis Cluster, and what discovery costs.

    .venv/bin/python bench/cluster_and_discovery.py [--queues 10,100,1000]

1. On a real 3-master Redis Cluster (tests/redis_cluster_for_tests.py) with npm bullmq's
   jobs in every state: the Redis commands one queueops snapshot and one tick's probe send
   (MONITOR on every master), with three queues in one slot (a `{bull}` prefix) and in
   three slots (queues `{orders}`, `{emails}`, `{billing}`), beside the npm anchor measured
   in the same run: `getJobCounts` of each queue, what a dashboard sends to show counts.
2. On a private redis-server holding N queues (10, 100, 1,000: one job each, added by
   PyPI bullmq), one discovery's commands (SCAN calls, meta checks) the first time and
   again (steady state), the hour's cost at the default cadence (10 min), and the longest
   single call Redis spent on it (SLOWLOG at 0 us), beside the anchor `KEYS *:meta` (one
   command, the whole keyspace in one call). Also the snapshot of all N queues: its calls
   and its longest call.

Writes bench/results/cluster_and_discovery.json and prints the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from command_counter import Tally, count_commands  # noqa: E402
from redis_cluster_for_tests import start_cluster  # noqa: E402

from bot.embedded_redis import embedded_redis  # noqa: E402
from bot.queues.bullmq.probe import Extra, TickOptions  # noqa: E402
from bot.queues.keys import QueueRef  # noqa: E402
from bot.queues.service import QueueService  # noqa: E402

NODE_CLI = ROOT / "tests" / "interop" / "bullmq-cli.mjs"
HOUR_MS = 3_600_000
DISCOVER_EVERY_MS = 600_000
LAYOUTS = {
    "1 slot ({bull} prefix)": ("{bull}", ["orders", "emails", "billing"]),
    "3 slots ({name} queues)": ("bull", ["{orders}", "{emails}", "{billing}"]),
}


def node(command: str, args: dict[str, Any], nodes_csv: str) -> Any:
    done = subprocess.run(
        ["node", str(NODE_CLI), command, json.dumps(args)],
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "REDIS_CLUSTER_NODES": nodes_csv},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


async def count_on(urls: list[str], block: Any) -> Tally:
    """MONITOR every master while `block()` runs; the tallies summed."""
    async with AsyncExitStack() as stack:
        tallies = [await stack.enter_async_context(count_commands(u)) for u in urls]
        await block()
    total = Tally()
    for t in tallies:
        total.client.update(t.client)
        total.in_scripts.update(t.in_scripts)
    return total


async def cluster_part() -> list[dict[str, Any]]:
    rows = []
    cluster = start_cluster()
    try:
        for layout, (prefix, queues) in LAYOUTS.items():
            cluster.flushall()
            for q in queues:
                node("populate", {"prefix": prefix, "queue": q}, cluster.nodes_csv)
            client = RedisCluster.from_url(cluster.url, decode_responses=True)
            service = QueueService(cast(Redis, client), prefixes=[prefix], queues=queues)
            state = "{bull}:queueops" if prefix == "{bull}" else "{queueops}"
            tick = TickOptions(
                keep_samples=12,
                sample_key_base="queueops:depth:",
                extras=(Extra("xpending", f"{state}:alerts", ("workers",)),),
            )
            await service.snapshot()  # scripts loaded: steady state is what is counted
            await service.probe(options=tick)
            snap = await count_on(cluster.urls, service.snapshot)
            probe = await count_on(cluster.urls, partial(service.probe, options=tick))
            counts = {"prefix": prefix, "queues": queues}
            anchor = partial(asyncio.to_thread, node, "counts", counts, cluster.nodes_csv)
            npm = await count_on(cluster.urls, anchor)
            npm_counts = npm.client.get("EVALSHA", 0) + npm.client.get("EVAL", 0)
            slots = len({cluster.keyslot(QueueRef(prefix, q).base) for q in queues})
            rows.append(
                {
                    "layout": layout,
                    "slots": slots,
                    "snapshotCommands": snap.client_total,
                    "probeCommands": probe.client_total,
                    "npmGetJobCountsCommands": npm_counts,
                }
            )
            await client.aclose()
    finally:
        cluster.stop()
    return rows


async def discovery_part(sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        with embedded_redis() as (url, _):
            redis = Redis.from_url(url, decode_responses=True)
            service = QueueService(redis)
            for i in range(n):
                q = service.store.bullmq(QueueRef("bull", f"q{i:04d}"))
                await q.add("job", {"i": i})
            keys = await redis.dbsize()
            await redis.config_set("slowlog-log-slower-than", 0)
            await redis.config_set("slowlog-max-len", 100_000)
            await redis.slowlog_reset()
            first_t = time.perf_counter()
            found = await service.catalog.discover()
            first_s = time.perf_counter() - first_t
            first = service.catalog.last_cost
            await service.catalog.discover()
            steady = service.catalog.last_cost
            assert first is not None and steady is not None and len(found) == n
            slow = await redis.slowlog_get(100_000)
            longest_scan_us = max(
                (int(e["duration"]) for e in slow if _command(e).startswith("SCAN")),
                default=0,
            )
            await redis.slowlog_reset()
            await redis.keys("*:meta")
            slow = await redis.slowlog_get(10)
            keys_us = max(
                (int(e["duration"]) for e in slow if _command(e).startswith("KEYS")),
                default=0,
            )
            await service.snapshot()
            await redis.slowlog_reset()
            snap_commands = (await count_on([url], service.snapshot)).client_total
            slow = await redis.slowlog_get(100_000)
            longest_snapshot_us = max(
                (int(e["duration"]) for e in slow if _command(e).startswith("EVALSHA")),
                default=0,
            )
            rows.append(
                {
                    "queues": n,
                    "keys": keys,
                    "firstDiscoveryCommands": first.commands,
                    "firstDiscoveryMs": round(first_s * 1000, 1),
                    "steadyDiscoveryCommands": steady.commands,
                    "perHour": steady.commands * HOUR_MS // DISCOVER_EVERY_MS,
                    "longestScanUs": longest_scan_us,
                    "anchorKeysUs": keys_us,
                    "snapshotCommands": snap_commands,
                    "longestSnapshotCallUs": longest_snapshot_us,
                }
            )
            await redis.aclose()
    return rows


def _command(entry: dict[str, Any]) -> str:
    raw = entry["command"]
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def table(rows: list[dict[str, Any]]) -> str:
    heads = list(rows[0])
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(str(r[h]) for h in heads) + " |" for r in rows]
    return "\n".join(lines)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queues", default="10,100,1000")
    ap.add_argument("--skip-cluster", action="store_true")
    args = ap.parse_args()
    sizes = [int(x) for x in args.queues.split(",")]
    result: dict[str, Any] = {}
    if not args.skip_cluster:
        result["cluster"] = await cluster_part()
        print(table(result["cluster"]))
    result["discovery"] = await discovery_part(sizes)
    print(table(result["discovery"]))
    out = ROOT / "bench" / "results" / "cluster_and_discovery.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
