"""Benchmark: the client commands of a snapshot of 5 queues with Workers connected (issue 14,
goal <= 2), beside npm bullmq's way of learning the same (getJobCounts + getWorkers per
queue), in the same run.

    .venv/bin/python bench/snapshot_with_workers.py [--workers 2] [--rounds 5]

On a private redis-server (bot.embedded_redis): 5 queues, each with `--workers` real npm
bullmq Workers (tests/interop/bullmq-cli.mjs `workers`, with `metrics` on) that first
process 20 jobs (4 of them failing) so BullMQ's metrics keys exist, then stay connected
while 50 delayed jobs per queue wait (work no Worker takes during the count).

Counted two ways for queueops: the client's own counter (bot/redis_client.commands_sent:
every command its client sends) and MONITOR filtered to that client's address (what the
server ran for it; the Workers' own BZPOPMINs are left out). npm bullmq's way is counted in
Node on the connection the Queues share (every command sent, by name), after a warm-up
round (the script load). Writes bench/results/snapshot_with_workers.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from command_counter import count_commands  # noqa: E402
from node_bullmq import node_bullmq  # noqa: E402

from bot.config import load_settings  # noqa: E402
from bot.embedded_redis import embedded_redis  # noqa: E402
from bot.queues.models import QueueSnapshot  # noqa: E402
from bot.queues.service import QueueService  # noqa: E402
from bot.redis_client import commands_sent, make_redis  # noqa: E402

QUEUES = ["batch-jobs", "dsar-jobs", "journey-jobs", "retrain-jobs", "seed-jobs"]
PREFIX = "bull"
HOUR_MS = 3_600_000


async def main(workers: int, rounds: int) -> dict[str, Any]:
    with embedded_redis() as (url, _):
        jobs = [{"name": "ok", "data": {}}] * 16 + [{"name": "bad", "data": {"fail": True}}] * 4
        for queue in QUEUES:
            await node_bullmq("add", {"prefix": PREFIX, "queue": queue, "jobs": jobs}, url)
        later = [{"name": "later", "data": {}, "opts": {"delay": HOUR_MS}}] * 50
        hold_s = 25 + rounds
        running = [
            asyncio.create_task(
                node_bullmq(
                    "workers",
                    {"prefix": PREFIX, "queue": q, "count": workers, "seconds": hold_s},
                    url,
                    time_limit_s=hold_s + 30,
                )
            )
            for q in QUEUES
        ]
        settings = load_settings(redis_url=url, prefix=PREFIX, queues=",".join(QUEUES))
        client = make_redis(settings)
        service = QueueService(client, prefixes=[PREFIX], queues=QUEUES)
        deadline = time.monotonic() + 20
        while True:  # every first job finished
            snaps = await service.snapshot()
            if all(s.counts["completed"] + s.counts["failed"] == 20 for s in snaps):
                break
            assert time.monotonic() < deadline, "the Workers did not finish the first jobs"
            await asyncio.sleep(0.2)
        for queue in QUEUES:
            await node_bullmq("add", {"prefix": PREFIX, "queue": queue, "jobs": later}, url)
        while [s.workers for s in await service.snapshot()] != [workers] * len(QUEUES):
            assert time.monotonic() < deadline, "the Workers did not all connect"
            await asyncio.sleep(0.2)
        address = str((await client.client_info())["addr"])

        sent: list[int] = []
        taken: list[list[QueueSnapshot]] = []

        async def snapshots() -> None:
            for _ in range(rounds):
                before = commands_sent()
                taken.append(await service.snapshot())
                sent.append(commands_sent() - before)

        stats = make_redis(settings)
        listed = int((await stats.info("commandstats"))["cmdstat_client|list"]["calls"])
        async with count_commands(url, address=address) as tally:
            await snapshots()
        monitored = tally.client
        listed = int((await stats.info("commandstats"))["cmdstat_client|list"]["calls"]) - listed
        await stats.aclose()
        npm = await node_bullmq("npm-snapshot", {"prefix": PREFIX, "queues": QUEUES}, url)
        for task in running:
            await task
        await client.aclose()
    last = taken[-1]
    result = {
        "queues": len(QUEUES),
        "workersPerQueue": workers,
        "rounds": rounds,
        "queueops": {
            "clientCommandsPerSnapshot": max(sent),
            "monitorPerSnapshot": {k: v / rounds for k, v in sorted(monitored.items())},
            "clientListPerSnapshot": listed / rounds,
            "workersSeen": [s.workers for s in last],
            "throughput": [
                s.throughput.model_dump(by_alias=True) if s.throughput else None for s in last
            ],
        },
        "npmBullmq": {
            "clientCommandsPerSnapshot": npm["total"],
            "byCommand": npm["commands"],
            "workersSeen": [npm["workers"][q] for q in QUEUES],
        },
    }
    result["ratio"] = round(npm["total"] / max(sent), 2)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    found = asyncio.run(main(opts.workers, opts.rounds))
    out = ROOT / "bench" / "results" / "snapshot_with_workers.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(found, indent=2) + "\n")
    qo, npm = found["queueops"], found["npmBullmq"]
    print(f"{'':26} {'commands':>9}  workers seen")
    print(f"{'queueops snapshot':26} {qo['clientCommandsPerSnapshot']:>9}  {qo['workersSeen']}")
    npm_line = f"{'npm getJobCounts+getWorkers':26} {npm['clientCommandsPerSnapshot']:>9}"
    print(f"{npm_line}  {npm['workersSeen']}")
    print(
        f"MONITOR, queueops' client, per snapshot: {qo['monitorPerSnapshot']} (MONITOR does "
        f"not show CLIENT LIST; INFO commandstats: {qo['clientListPerSnapshot']} a snapshot)"
    )
    print(f"npm bullmq by command: {npm['byCommand']}")
    print(f"ratio npm / queueops: {found['ratio']}x; queueops throughput: {qo['throughput'][0]}")
