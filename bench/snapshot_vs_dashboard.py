"""Benchmark: Redis time of one `snapshot` against npm bullmq's dashboard way, same run.

    .venv/bin/python bench/snapshot_vs_dashboard.py [--sizes 1000,100000] [--rounds 50]

For each size, a private redis-server gets 5 queues of N waiting, N/10 prioritized and N/10
failed jobs, built
in npm bullmq's layout by one script call per 10,000 jobs (npm's getJobCounts is checked to
read them). Then, alternating in blocks so drift hits both alike: queueops' snapshot of the 5
queues (one EVALSHA) and the dashboard way (bench/dashboard.mjs: per queue getJobCounts, a
page of 10 waiting and 10 failed jobs, as Bull Board shows them), each timed by the server:
SLOWLOG at 0 us, durations summed over the commands clients sent (the commands a script runs
inside are logged too, with address `?:0`, and are already in its EVALSHA's time). Prints
server time per operation (the median of the blocks) and the ratio; writes
bench/results/snapshot_vs_dashboard.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.embedded_redis import embedded_redis  # noqa: E402
from bot.queues.service import QueueService  # noqa: E402

QUEUES = ["batch-jobs", "dsar-jobs", "journey-jobs", "retrain-jobs", "seed-jobs"]
PREFIX = "bull"
PER_CALL = 10_000
BLOCKS = 5
ADMIN = "bench-admin"
IN_SCRIPT = "?:0"

# One call adds up to ARGV[3] jobs in npm bullmq 5's layout: the job hash (what addJob
# writes: name, data, opts, timestamp, delay, priority, and for a failed job what
# moveToFinished adds) and its id in `wait` (LPUSH: the tail is the oldest) or `failed`.
FILL = """
local base, state, first, count, now = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4])
local ids = {}
for i = first, first + count - 1 do
  local id = state .. i
  local ts = now - 3600000 + i
  local fields = { "name", "kind-" .. (i % 7), "data", '{"account":' .. i .. ',"doc":"invoice"}',
    "opts", '{"attempts":1}', "timestamp", ts, "delay", 0, "priority", 0 }
  if state == "f" then
    local more = { "attemptsMade", 1, "atm", 1, "processedOn", ts + 5, "finishedOn", ts + 9,
      "failedReason", "ECONNRESET " .. (i % 3), "stacktrace", '["Error: ECONNRESET"]' }
    for _, v in ipairs(more) do fields[#fields + 1] = v end
    redis.call("ZADD", base .. "failed", ts + 9, id)
  elseif state == "p" then
    fields[12] = 1  -- priority 1; the score is priority * 2^32 + a counter, as npm's addJob
    redis.call("ZADD", base .. "prioritized", 4294967296 + i, id)
  else
    ids[#ids + 1] = id
  end
  redis.call("HSET", base .. id, unpack(fields))
end
for from = 1, #ids, 1000 do  -- unpack has a stack limit: 1,000 at a time
  redis.call("LPUSH", base .. "wait", unpack(ids, from, math.min(from + 999, #ids)))
end
return count
"""


async def fill(redis: Redis, size: int) -> None:
    script = redis.register_script(FILL)
    seconds, _ = await redis.time()
    now_ms = int(seconds) * 1000
    for queue in QUEUES:
        base = f"{PREFIX}:{queue}:"
        await redis.hset(base + "meta", mapping={"opts.maxLenEvents": 10000})
        for state, total in (("w", size), ("p", max(size // 10, 1)), ("f", max(size // 10, 1))):
            for first in range(0, total, PER_CALL):
                n = min(PER_CALL, total - first)
                await script(keys=[base], args=[state, first, n, now_ms])


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def server_time(admin: Redis) -> tuple[int, int]:
    """(microseconds, commands) the clients' commands took since the last reset; the admin
    connection's own commands and those run inside scripts are left out."""
    total = commands = 0
    for entry in await admin.slowlog_get(1_000_000):
        if _text(entry["client_address"]) == IN_SCRIPT or _text(entry["client_name"]) == ADMIN:
            continue
        total += int(entry["duration"])
        commands += 1
    await admin.slowlog_reset()
    return total, commands


class Dashboard:
    """bench/dashboard.mjs, driven a block of rounds at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, url: str) -> tuple[Dashboard, dict[str, Any]]:
        if not (ROOT / "tests" / "interop" / "node_modules" / "bullmq").is_dir():
            raise SystemExit("bench: run ./scripts/test once first (it installs npm bullmq)")
        args = json.dumps({"url": url, "prefix": PREFIX, "queues": QUEUES, "page": 10})
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(ROOT / "bench" / "dashboard.mjs"),
            args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        dashboard = cls(proc)
        ready = await dashboard._line()
        return dashboard, ready["counts"]

    async def _line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 600)
        if not line:
            raise SystemExit("bench: bench/dashboard.mjs stopped (see its stderr)")
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    async def rounds(self, n: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"go {n}\n".encode())
        await self.proc.stdin.drain()
        assert (await self._line())["done"] == n

    async def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"exit\n")
        await self.proc.stdin.drain()
        self.proc.stdin.close()
        await asyncio.wait_for(self.proc.wait(), 30)


async def measure(size: int, rounds: int) -> dict[str, Any]:
    with embedded_redis() as (url, _):
        admin = Redis.from_url(url, decode_responses=True, client_name=ADMIN)
        await fill(admin, size)
        redis = Redis.from_url(url, decode_responses=True, protocol=2)
        service = QueueService(redis, prefixes=[PREFIX], queues=QUEUES)
        snaps = await service.snapshot()  # loads the script: steady state is measured
        dashboard, node_counts = await Dashboard.start(url)
        for snap in snaps:  # npm bullmq reads the filled layout as queueops does
            assert node_counts[snap.name] == snap.counts, (node_counts[snap.name], snap.counts)
        await admin.config_set("slowlog-max-len", 1_000_000)
        await admin.config_set("slowlog-log-slower-than", 0)
        await admin.slowlog_reset()
        ours: list[float] = []
        theirs: list[float] = []
        our_commands = their_commands = 0
        per_block = max(rounds // BLOCKS, 1)
        for _ in range(BLOCKS):
            for _ in range(per_block):
                await service.snapshot()
            us, n = await server_time(admin)
            ours.append(us / per_block)
            our_commands += n
            await dashboard.rounds(per_block)
            us, n = await server_time(admin)
            theirs.append(us / per_block)
            their_commands += n
        await admin.config_set("slowlog-log-slower-than", 10_000)
        await dashboard.close()
        await redis.aclose()
        await admin.aclose()
    done = per_block * BLOCKS
    # The median block: a neighbour's burst on a shared machine lands in one block, not all.
    q_us, d_us = statistics.median(ours), statistics.median(theirs)
    return {
        "jobsPerQueue": {
            "waiting": size,
            "prioritized": max(size // 10, 1),
            "failed": max(size // 10, 1),
        },
        "queues": len(QUEUES),
        "rounds": done,
        "queueops": {
            "serverUsPerSnapshot": round(q_us, 1),
            "blocksUs": [round(v, 1) for v in ours],
            "commandsPerSnapshot": our_commands / done,
        },
        "dashboard": {
            "serverUsPerRound": round(d_us, 1),
            "blocksUs": [round(v, 1) for v in theirs],
            "commandsPerRound": their_commands / done,
        },
        "ratio": round(q_us / d_us, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    rows = [asyncio.run(measure(int(s), args.rounds)) for s in args.sizes.split(",")]
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "snapshot_vs_dashboard.json").write_text(json.dumps(rows, indent=2))
    print(
        f"{'jobs/queue':>11} {'queueops us':>12} {'cmds':>5} {'dashboard us':>13} {'cmds':>5} "
        f"{'ratio':>6}"
    )
    for row in rows:
        q, d = row["queueops"], row["dashboard"]
        print(
            f"{row['jobsPerQueue']['waiting']:>11} {q['serverUsPerSnapshot']:>12} "
            f"{q['commandsPerSnapshot']:>5g} {d['serverUsPerRound']:>13} "
            f"{d['commandsPerRound']:>5g} {row['ratio']:>6}"
        )


if __name__ == "__main__":
    main()
