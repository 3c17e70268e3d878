"""Benchmark: `find` and `failures` over 100,000 failed jobs, each Redis call timed by Redis.

    .venv/bin/python bench/find_and_failures.py [--failed 100000] [--waiting 1000000]

On a private redis-server: one queue with `--failed` failed jobs (eight realistic causes,
each reason carrying what changes from job to job: addresses, ports, ids, durations,
timestamps; each job with a Worker-like stack trace and a payload {"user": {"id": N}})
beside `--waiting` waiting jobs, written in npm bullmq 5's layout by one Lua call per
10,000 jobs and read back by npm bullmq (getJobCounts). Then, through the public
QueueService methods, `failures` (the newest 1,000, and all of them), `find` with a reason
regex and with a data path over every failed job, `find` with the default --scan bound over
every state, and `find --id`.

The anchor, in the same run, is what a person (or Bull Board's failed tab) does today to
answer "what do the failures have in common": `getFailed(0, -1)`, i.e. npm bullmq's
getJobs: one ZREVRANGE of the whole failed set, then every job hash (HGETALL, pipelined as
ioredis auto-pipelines), grouped by exact reason on the client.

Each operation runs with Redis 7's latency percentiles reset (INFO latencystats: p50 and
p99 of the operation's slowest command) and under SLOWLOG at 1 ms: every call over 1 ms is
logged, so the slowest call is Redis' own measure of it (at threshold 0 Redis 7 also logs
every command a script runs inside it, a few hundred per page, and that logging itself
doubled a page's time). The commands are counted as redis-py encodes them (a script call is one).
Writes bench/results/find_and_failures.json and prints a table with ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from command_counter import counting_commands  # noqa: E402

from bot.embedded_redis import embedded_redis  # noqa: E402
from bot.patterns import compile_user_pattern  # noqa: E402
from bot.queues.models import JobFilter  # noqa: E402
from bot.queues.service import QueueService  # noqa: E402

PREFIX = "bull"
QUEUE = "triage-jobs"
PER_CALL = 10_000
CONTROL_NAME = "find-bench-control"
THRESHOLD_US = 1000
CONTROL_COMMANDS = {"config", "slowlog", "info", "client", "ping", "hello"}
NODE_CLI = ROOT / "tests" / "interop" / "bullmq-cli.mjs"

# Eight causes; `i` makes each reason differ the way real ones do. The share of each is
# uneven (i % 16), as in a real incident: one cause dominates.
BUILD = """
local base, first, count, kind, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]),
  ARGV[4], tonumber(ARGV[5])
local names = {"send-email", "sync-crm", "render-pdf", "charge-card"}
local function reason(i)
  local c = i % 16
  if c < 6 then return "connect ECONNRESET 10.0." .. (i % 250) .. "." .. (i % 199) .. ":" ..
    (5000 + i % 900) end
  if c < 9 then return "Cannot read properties of undefined (reading 'email')" end
  if c < 11 then return "Timeout of " .. (1000 + i % 9000) .. "ms exceeded" end
  if c < 12 then return 'insert or update on table "orders" violates foreign key, id=' .. i end
  if c < 13 then return "Request failed with status code " .. (500 + i % 4) end
  if c < 14 then return "ETIMEDOUT: no reply from redis at 2026-12-03T14:" .. (i % 60) ..
    ":00Z" end
  if c < 15 then return "user " .. string.format("%08x-0000-4000-8000-%012x", i, i) ..
    " not found" end
  return "Rate limited by api.stripe.com, retry after " .. (i % 60) .. " s"
end
for i = first, first + count - 1 do
  local id = tostring(i)
  local ts = now - 7200000 + i
  local data = '{"user":{"id":' .. (i % 1000) .. '},"order":"ord_' .. i .. '"}'
  if kind == "wait" then
    redis.call("HSET", base .. id, "name", names[i % 4 + 1], "data", data,
      "opts", '{"attempts":0}', "timestamp", ts, "delay", 0, "priority", 0)
    redis.call("LPUSH", KEYS[1], id)
  else
    local r = reason(i)
    local stack = cjson.encode({"Error: " .. r .. "\\n    at " .. names[i % 4 + 1] ..
      " (/app/jobs/" .. names[i % 4 + 1] .. ".js:" .. (40 + i % 7) .. ":13)\\n" ..
      "    at Worker.processJob (/app/node_modules/bullmq/dist/cjs/classes/worker.js:619:21)"})
    redis.call("HSET", base .. id, "name", names[i % 4 + 1], "data", data,
      "opts", '{"attempts":1}', "timestamp", ts, "delay", 0, "priority", 0,
      "processedOn", ts + 5, "finishedOn", ts + 9, "atm", 1, "ats", 1,
      "failedReason", r, "stacktrace", stack)
    redis.call("ZADD", KEYS[2], ts + 9, id)
  end
end
local top = first + count - 1
if tonumber(redis.call("GET", KEYS[4]) or "0") < top then
  redis.call("SET", KEYS[4], top)
end
redis.call("HSET", KEYS[3], "opts.maxLenEvents", 10000, "version", "bullmq:5.81.5")
return count
"""


def build(control: redis.Redis, kind: str, first: int, count: int) -> None:
    base = f"{PREFIX}:{QUEUE}:"
    keys = [base + k for k in ("wait", "failed", "meta", "id")]
    script = control.register_script(BUILD)
    now = int(time.time() * 1000)
    for start in range(first, first + count, PER_CALL):
        script(keys=keys, args=[base, start, min(PER_CALL, first + count - start), kind, now])


def node_counts(url: str) -> dict[str, Any]:
    done = subprocess.run(
        ["node", str(NODE_CLI), "counts", json.dumps({"prefix": PREFIX, "queues": [QUEUE]})],
        check=True,
        capture_output=True,
        env={**os.environ, "REDIS_URL": url, "BULLMQ_CLI_TIMEOUT_MS": "600000"},
    )
    counts: dict[str, Any] = json.loads(done.stdout)[QUEUE]
    return counts


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class Slowlog:
    """SLOWLOG around one operation (threshold 0), on a control connection left out."""

    def __init__(self, control: redis.Redis) -> None:
        self.control = control

    def start(self) -> None:
        self.control.config_set("slowlog-max-len", 1_000_000)
        self.control.config_set("slowlog-log-slower-than", THRESHOLD_US)
        self.control.slowlog_reset()
        self.control.config_resetstat()

    def stop(self) -> dict[str, Any]:
        self.control.config_set("slowlog-log-slower-than", 10_000_000)
        entries = self.control.slowlog_get(-1)
        self.control.slowlog_reset()
        calls = [
            e
            for e in entries
            if _text(e.get("client_address")) != "?:0"
            and _text(e.get("client_name")) != CONTROL_NAME
        ]
        slowest = max(calls, key=lambda e: int(e["duration"]), default=None)
        # Redis 7's per-command latency percentiles (INFO latencystats): the command of the
        # operation whose p99 is highest (a script's time includes what it runs inside).
        stats = self.control.info("latencystats")
        ours = {
            k.removeprefix("latency_percentiles_usec_"): v
            for k, v in stats.items()
            if k.removeprefix("latency_percentiles_usec_") not in CONTROL_COMMANDS
        }
        worst = max(ours.items(), key=lambda kv: float(kv[1]["p99"]), default=None)
        return {
            "p50Ms": round(float(worst[1]["p50"]) / 1000, 3) if worst else None,
            "p99Ms": round(float(worst[1]["p99"]) / 1000, 3) if worst else None,
            "p99Command": worst[0] if worst else None,
            "slowestCallMs": round(int(slowest["duration"]) / 1000, 3) if slowest else None,
            "slowestCall": _text(slowest["command"])[:60] if slowest else None,
            "callsOver10ms": sum(1 for e in calls if int(e["duration"]) > 10_000),
        }


async def measure(slowlog: Slowlog, run: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    slowlog.start()
    with counting_commands() as counts:
        started = time.perf_counter()
        outcome = await run()
        wall_ms = (time.perf_counter() - started) * 1000
    return {
        "wallMs": round(wall_ms, 1),
        "calls": sum(counts.values()),
        **slowlog.stop(),
        "outcome": outcome,
    }


async def get_failed_all(client: Redis) -> dict[str, Any]:
    """The anchor: getFailed(0, -1) as npm bullmq's getJobs does it (one range of the whole
    set, every hash after it, pipelined), then the reasons grouped as they are."""
    ids = await client.zrevrange(f"{PREFIX}:{QUEUE}:failed", 0, -1)
    async with client.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hgetall(f"{PREFIX}:{QUEUE}:{job_id}")
        jobs = await pipe.execute()
    groups = Counter(str(j.get("failedReason", "")) for j in jobs)
    return {"jobs": len(jobs), "groups": len(groups)}


async def run(failed: int, waiting: int) -> dict[str, Any]:
    with embedded_redis() as (url, _):
        control = redis.Redis.from_url(url, decode_responses=True)
        control.client_setname(CONTROL_NAME)
        started = time.perf_counter()
        build(control, "failed", 1, failed)
        if waiting:
            build(control, "wait", failed + 1, waiting)
        built_s = round(time.perf_counter() - started, 1)
        counts = node_counts(url)
        assert counts["failed"] == failed and counts["waiting"] == waiting, counts
        print(f"built in {built_s} s; npm bullmq counts: failed {failed:,}, waiting {waiting:,}")

        client = Redis.from_url(url, decode_responses=True)
        service = QueueService(client, prefixes=[PREFIX], queues=[QUEUE])
        await service.find(QUEUE, JobFilter(job_id="1"))  # scripts loaded: steady state
        slowlog = Slowlog(control)
        ops: dict[str, dict[str, Any]] = {}

        async def op(name: str, call: Callable[[], Awaitable[Any]]) -> None:
            ops[name] = await measure(slowlog, call)
            o = ops[name]
            print(f"  {name}: {o['wallMs']} ms, slowest call {o['slowestCallMs']} ms", flush=True)

        async def failures(scan: int) -> dict[str, Any]:
            report = await service.failures(QUEUE, scan=scan)
            top = report.clusters[0]
            return {
                "looked": report.scan.looked,
                "clusters": len(report.clusters),
                "top": [top.count, top.text],
            }

        async def find(flt: JobFilter) -> dict[str, Any]:
            result = await service.find(QUEUE, flt)
            return {
                "looked": result.scan.looked,
                "matched": len(result.jobs),
                "stoppedBy": result.scan.stopped_by,
                "note": result.note,
            }

        everything = failed + waiting
        await op("failures (newest 1,000)", lambda: failures(1000))
        await op(f"failures --scan {failed:,}", lambda: failures(failed))
        await op(
            f"find --state failed --reason 'ETIMEDOUT|status code 50[23]' --scan {failed:,}",
            lambda: find(
                JobFilter(
                    states=("failed",),
                    reason=compile_user_pattern("ETIMEDOUT|status code 50[23]"),
                    limit=failed,
                    scan=failed,
                )
            ),
        )
        await op(
            f"find --state failed --data-path user.id=42 --scan {failed:,}",
            lambda: find(
                JobFilter(
                    states=("failed",), data_path=("user.id", "42"), limit=failed, scan=failed
                )
            ),
        )
        await op(
            "find --name nobody (default --scan 10,000, every state)",
            lambda: find(JobFilter(name="nobody")),
        )
        newest = str(everything)
        await op(f"find --id {newest} (newest waiting)", lambda: find(JobFilter(job_id=newest)))
        middle = str(failed // 2)
        await op(f"find --id {middle} (a failed job)", lambda: find(JobFilter(job_id=middle)))
        await op("anchor: getFailed(0, -1) + group by reason", lambda: get_failed_all(client))
        await client.aclose()
        control.close()
    return {"failed": failed, "waiting": waiting, "buildSeconds": built_s, "ops": ops}


def table(result: dict[str, Any]) -> str:
    ops = result["ops"]
    anchor = ops["anchor: getFailed(0, -1) + group by reason"]
    rows = [
        "| operation | total | calls | p50 / p99 call | slowest call | vs anchor's slowest "
        "| over 10 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, o in ops.items():
        ratio = (
            f"{o['slowestCallMs'] / anchor['slowestCallMs']:.3f}"
            if o["slowestCallMs"] and anchor["slowestCallMs"]
            else "-"
        )
        slowest = f"{o['slowestCallMs']} ms" if o["slowestCallMs"] else "< 1 ms"
        rows.append(
            f"| {name} | {o['wallMs']:,.0f} ms | {o['calls']:,} | "
            f"{o['p50Ms']} / {o['p99Ms']} ms ({o['p99Command']}) | {slowest} | "
            f"{ratio} | {o['callsOver10ms']} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--failed", type=int, default=100_000)
    parser.add_argument("--waiting", type=int, default=1_000_000)
    args = parser.parse_args()
    result = asyncio.run(run(args.failed, args.waiting))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "find_and_failures.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
