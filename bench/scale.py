"""Benchmark: queueops at a million jobs, each call timed by Redis, against npm bullmq's way.

    .venv/bin/python bench/scale.py [--waiting 1000000] [--failed 100000] [--replay 1000]

On a private redis-server: one queue with `--waiting` waiting jobs and `--failed` failed
jobs (plus 1,000 for the retry), a second with `--failed` failed jobs for npm's bulk move,
all written in npm bullmq 5's exact layout by one Lua call per 10,000 jobs (job hash, wait
list or failed set, meta, id counter, marker), then read back with npm bullmq (getJobCounts,
getJob). Then each operation once, through the public QueueService methods: snapshot,
probe, quarantine of the oldest and of the newest waiting job, pause, resume, retry of
1,000 failed, bulk quarantine of every failed job, replay of `--replay` jobs; and npm
bullmq's way in the same run (bench/npm_anchor.mjs): getJob + job.remove of the next
oldest and newest waiting job, add to the DLQ queue + remove 500 at a time in parallel for
the bulk move, add + remove for the replay.

Every operation runs under SLOWLOG: at threshold 0 (every call logged, the slowest kept)
where the commands its scripts run inside stay few; at 1 ms for the bulk moves, pause and
resume, whose scripts run millions of commands that Redis 7 would log one by one at 0 (any
call over 1 ms is still logged, and every bulk call is). "over 10 ms" counts the calls
(not the commands run inside them) Redis logged above 10 ms. Commands are counted as the
clients send them (redis-py's and ioredis' command encoders). Writes
bench/results/scale.json and prints a table with ratios (queueops / npm).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
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
from bot.queues.service import QueueService  # noqa: E402

PREFIX = "bull"
QUEUE = "scale-jobs"
NPM_QUEUE = "scale-npm"
RETRY = 1000
PER_CALL = 10_000
PATTERN = "ECONNRESET"
CONTROL_NAME = "scale-bench-control"
NODE_CLI = ROOT / "tests" / "interop" / "bullmq-cli.mjs"
NPM_ANCHOR = ROOT / "bench" / "npm_anchor.mjs"
STACK = (
    '["Error: ECONNRESET\\n    at Socket.onEnd (node:net:123:45)\\n'
    '    at Worker.processJob (worker.js:619:21)"]'
)

# One call writes up to 10,000 jobs the way npm bullmq 5 leaves them: a waiting job as
# addStandardJob stores it (name, data, opts, timestamp, delay, priority; LPUSH to wait,
# the marker), a failed one as moveToFinished leaves it after one attempt (plus
# processedOn, finishedOn, atm, ats, failedReason, stacktrace; in `failed` by finishedOn).
BUILD = """
local base, first, count, kind, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]),
  ARGV[4], tonumber(ARGV[5])
for i = first, first + count - 1 do
  local id = tostring(i)
  local ts = now - 3600000 + i
  if kind == "wait" then
    redis.call("HSET", base .. id, "name", "kind-" .. (i % 7), "data", '{"i":' .. i .. '}',
      "opts", '{"attempts":0}', "timestamp", ts, "delay", 0, "priority", 0)
    redis.call("LPUSH", KEYS[1], id)
  else
    redis.call("HSET", base .. id, "name", "kind-" .. (i % 7), "data", '{"i":' .. i .. '}',
      "opts", '{"attempts":1}', "timestamp", ts, "delay", 0, "priority", 0,
      "processedOn", ts + 5, "finishedOn", ts + 9, "atm", 1, "ats", 1,
      "failedReason", "ECONNRESET #" .. i, "stacktrace", ARGV[6])
    redis.call("ZADD", KEYS[2], ts + 9, id)
  end
end
local top = first + count - 1
if tonumber(redis.call("GET", KEYS[4]) or "0") < top then
  redis.call("SET", KEYS[4], top)
end
redis.call("HSET", KEYS[3], "opts.maxLenEvents", 10000, "version", "bullmq:5.81.5")
if kind == "wait" then
  redis.call("ZADD", KEYS[5], 0, "0")
end
return count
"""


def build(control: redis.Redis, queue: str, kind: str, first: int, count: int) -> int:
    """Write `count` jobs with ids first.. in one Lua call per PER_CALL; returns the calls."""
    base = f"{PREFIX}:{queue}:"
    keys = [base + k for k in ("wait", "failed", "meta", "id", "marker")]
    script = control.register_script(BUILD)
    now = int(time.time() * 1000)
    calls = 0
    for start in range(first, first + count, PER_CALL):
        n = min(PER_CALL, first + count - start)
        script(keys=keys, args=[base, start, n, kind, now, STACK])
        calls += 1
    return calls


def node(script: Path, url: str, command: str, args: dict[str, Any]) -> Any:
    if not (ROOT / "tests" / "interop" / "node_modules" / "bullmq").is_dir():
        raise SystemExit("bench: run ./scripts/test once first (it installs npm bullmq)")
    done = subprocess.run(
        ["node", str(script), command, json.dumps({"prefix": PREFIX, **args})],
        check=True,
        capture_output=True,
        env={**os.environ, "REDIS_URL": url, "BULLMQ_CLI_TIMEOUT_MS": "600000"},
    )
    return json.loads(done.stdout)


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class Slowlog:
    """SLOWLOG around one operation, on a control connection the log leaves out."""

    def __init__(self, control: redis.Redis) -> None:
        self.control = control

    def start(self, threshold_us: int) -> None:
        self.threshold_us = threshold_us
        self.control.config_set("slowlog-max-len", 1_000_000)
        self.control.config_set("slowlog-log-slower-than", threshold_us)
        self.control.slowlog_reset()

    def stop(self) -> dict[str, Any]:
        self.control.config_set("slowlog-log-slower-than", 10_000_000)
        entries = self.control.slowlog_get(-1)
        self.control.slowlog_reset()
        # Redis 7 logs the commands a script runs too, from client "?:0": only calls count.
        calls = [
            e
            for e in entries
            if _text(e.get("client_address")) != "?:0"
            and _text(e.get("client_name")) != CONTROL_NAME
        ]
        slowest = max(calls, key=lambda e: int(e["duration"]), default=None)
        return {
            "slowlogThresholdUs": self.threshold_us,
            "slowestCallMs": round(int(slowest["duration"]) / 1000, 3) if slowest else None,
            "slowestCall": _text(slowest["command"])[:80] if slowest else None,
            "callsOver10ms": sum(1 for e in calls if int(e["duration"]) > 10_000),
        }


async def queueops_op(
    slowlog: Slowlog, threshold_us: int, run: Callable[[], Awaitable[Any]]
) -> dict[str, Any]:
    slowlog.start(threshold_us)
    with counting_commands() as counts:
        started = time.perf_counter()
        outcome = await run()
        wall_ms = (time.perf_counter() - started) * 1000
    report = slowlog.stop()
    return {
        "wallMs": round(wall_ms, 1),
        "commands": sum(counts.values()),
        "byCommand": dict(counts),
        **report,
        "outcome": outcome,
    }


def npm_op(
    slowlog: Slowlog, threshold_us: int, url: str, command: str, args: dict[str, Any]
) -> dict[str, Any]:
    slowlog.start(threshold_us)
    measured = node(NPM_ANCHOR, url, command, args)
    report = slowlog.stop()
    return {
        "wallMs": round(float(measured["wallMs"]), 1),
        "commands": measured["commands"],
        "byCommand": measured["byCommand"],
        **report,
        "outcome": measured["done"],
    }


async def run(waiting: int, failed: int, replay: int) -> dict[str, Any]:
    with embedded_redis() as (url, _):
        control = redis.Redis.from_url(url, decode_responses=True)
        control.client_setname(CONTROL_NAME)
        started = time.perf_counter()
        calls = build(control, QUEUE, "wait", 1, waiting)
        calls += build(control, QUEUE, "failed", waiting + 1, failed + RETRY)
        calls += build(control, NPM_QUEUE, "failed", 1, failed)
        built = {"luaCalls": calls, "seconds": round(time.perf_counter() - started, 1)}
        counts = node(NODE_CLI, url, "counts", {"queues": [QUEUE, NPM_QUEUE]})
        readable = {
            str(job_id): (found or {}).get("state")
            for job_id in (1, waiting, waiting + 1, waiting + failed + RETRY)
            for found in [node(NODE_CLI, url, "job", {"queue": QUEUE, "id": str(job_id)})]
        }
        expected = {"1": "waiting", str(waiting): "waiting"}
        assert counts[QUEUE]["waiting"] == waiting, counts
        assert counts[QUEUE]["failed"] == failed + RETRY, counts
        assert all(readable[k] == v for k, v in expected.items()), readable
        print(f"built in {built['seconds']} s ({calls} Lua calls); npm bullmq reads: {readable}")

        client = Redis.from_url(url, decode_responses=True)
        service = QueueService(client, prefixes=[PREFIX], queues=[QUEUE, NPM_QUEUE])
        await service.snapshot([QUEUE])  # scripts loaded once: steady state is measured
        slowlog = Slowlog(control)
        pattern = compile_user_pattern(PATTERN)
        ops: dict[str, dict[str, Any]] = {}

        async def ours(name: str, threshold_us: int, call: Callable[[], Awaitable[Any]]) -> None:
            ops.setdefault(name, {})["queueops"] = await queueops_op(slowlog, threshold_us, call)
            print(f"  {name}: queueops {ops[name]['queueops']['wallMs']} ms", flush=True)

        def theirs(name: str, threshold_us: int, command: str, args: dict[str, Any]) -> None:
            ops.setdefault(name, {})["npm"] = npm_op(slowlog, threshold_us, url, command, args)
            print(f"  {name}: npm {ops[name]['npm']['wallMs']} ms", flush=True)

        await ours("snapshot", 0, lambda: _done(service.snapshot([QUEUE])))
        await ours("probe", 0, lambda: _done(service.probe([QUEUE])))
        await ours(
            "quarantine oldest waiting",
            0,
            lambda: _moved(service.quarantine(QUEUE, "1", reason="bench", actor="bench")),
        )
        theirs("quarantine oldest waiting", 0, "remove", {"queue": QUEUE, "id": "2"})
        await ours(
            "quarantine newest waiting",
            0,
            lambda: _moved(service.quarantine(QUEUE, str(waiting), reason="bench", actor="b")),
        )
        theirs("quarantine newest waiting", 0, "remove", {"queue": QUEUE, "id": str(waiting - 1)})
        await ours("pause", 1000, lambda: service.pause(QUEUE))
        await ours("resume", 1000, lambda: service.resume(QUEUE))
        await ours(f"retry {RETRY}", 0, lambda: service.retry(QUEUE, count=RETRY))
        bulk = f"bulk quarantine {failed}"
        await ours(
            bulk,
            1000,
            lambda: _count_moved(
                service.quarantine_matching(
                    QUEUE, pattern, limit=failed, reason="bench", actor="bench"
                )
            ),
        )
        theirs(
            bulk,
            1000,
            "bulk",
            {
                "queue": NPM_QUEUE,
                "dlq": f"{NPM_QUEUE}-dlq",
                "count": failed,
                "pattern": PATTERN,
                "parallel": 500,
            },
        )
        name = f"replay {replay}"
        await ours(name, 0, lambda: _count_replayed(service.dlq_replay(QUEUE, count=replay)))
        theirs(
            name,
            0,
            "replay",
            {"queue": NPM_QUEUE, "dlq": f"{NPM_QUEUE}-dlq", "count": replay, "parallel": 500},
        )
        await client.aclose()
        control.close()
    return {
        "waiting": waiting,
        "failed": failed,
        "build": built,
        "npmReads": {"counts": counts, "states": readable},
        "operations": ops,
    }


def machine_worst_stall_ms(seconds: int = 3) -> float | None:
    """The longest this machine kept a busy process off the CPU over `seconds`
    (`redis-cli --intrinsic-latency`: Redis' own check of what no server can do better
    than). On a shared VM it reaches ~10 ms now and then: a call SLOWLOG puts over 10 ms may
    be such a stall, not the call's work; the same stalls hit npm bullmq's calls."""
    cli = shutil.which("redis-cli")
    if cli is None:
        return None
    out = subprocess.run(
        [cli, "--intrinsic-latency", str(seconds)], capture_output=True, text=True, check=False
    ).stdout
    found = re.findall(r"Max latency so far: (\d+) microseconds", out)
    return int(found[-1]) / 1000 if found else None


async def _done(call: Awaitable[Any]) -> bool:
    await call
    return True


async def _moved(call: Awaitable[Any]) -> bool:
    return bool((await call).moved)


async def _count_moved(call: Awaitable[Any]) -> int:
    return len((await call).moved)


async def _count_replayed(call: Awaitable[Any]) -> int:
    return len((await call).replayed)


def _cell(side: dict[str, Any] | None) -> str:
    if side is None:
        return "-"
    slowest = side["slowestCallMs"]
    shown = f"{slowest} ms" if slowest is not None else f"< {side['slowlogThresholdUs'] / 1000} ms"
    return (
        f"{side['wallMs']} ms, {side['commands']} cmds, slowest {shown}, "
        f"{side['callsOver10ms']} over 10 ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiting", type=int, default=1_000_000)
    parser.add_argument("--failed", type=int, default=100_000)
    parser.add_argument("--replay", type=int, default=1000)
    args = parser.parse_args()
    stall_before = machine_worst_stall_ms()
    report = asyncio.run(run(args.waiting, args.failed, args.replay))
    report["machineWorstStallMs"] = [stall_before, machine_worst_stall_ms()]
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "scale.json").write_text(json.dumps(report, indent=2))
    print(f"{'operation':<28} {'queueops':<58} {'npm bullmq':<58} ratio")
    for name, sides in report["operations"].items():
        ours, theirs = sides.get("queueops"), sides.get("npm")
        ratio = f"{ours['wallMs'] / theirs['wallMs']:.2f}" if ours and theirs else "-"
        print(f"{name:<28} {_cell(ours):<58} {_cell(theirs):<58} {ratio}")
    before, after = report["machineWorstStallMs"]
    print(
        f"this machine's worst stall (redis-cli --intrinsic-latency 3 s): {before} ms, "
        f"then {after} ms"
    )


if __name__ == "__main__":
    main()
