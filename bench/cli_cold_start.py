"""Benchmark: how long a cold `queueops` takes, against the cost of importing redis-py.

    .venv/bin/python bench/cli_cold_start.py [--runs 15] [--json]

Each run is a new process (nothing cached but the OS's file cache and the .pyc files), as
a person typing the command gets. Three commands, in the same run, taking turns (the order
rotates every round, so a busy moment on the machine lands on all of them alike):

- `queueops snapshot`, against a private redis-server on a free loopback port started here,
  holding 5 queues with a few jobs each;
- `queueops --help`, which touches nothing;
- the baseline: `python -c "import redis.asyncio"`, the least any Python command that
  talks to Redis pays.

Prints the median, min and max wall time of each, and the ratios of the medians to the
baseline's. Goals (issue 10, item 14): `--help` within 1.5x of the baseline, `snapshot`
within 2.5x. One warm-up round first (it writes .pyc files after a change) is not counted.

`--before DIR` also times another source tree of queueops (say `git archive <commit> | tar
-x -C DIR`) in the same rounds: its `bot.cli` run by this Python with DIR first on the path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.embedded_redis import embedded_redis  # noqa: E402

BIN = Path(sys.executable).parent
QUEUEOPS = str(BIN / "queueops")
QUEUES = ["batch-jobs", "dsar-jobs", "journey-jobs", "retrain-jobs", "seed-jobs"]
PREFIX = "bench-cli"
GOALS = {"help": 1.5, "snapshot": 2.5}


async def fill(url: str) -> None:
    """A few waiting and delayed jobs in each queue (made by PyPI bullmq, as a producer)."""
    from bullmq import Queue

    for name in QUEUES:
        queue = Queue(name, {"connection": url, "prefix": PREFIX})
        try:
            for i in range(5):
                await queue.add(f"kind-{i % 3}", {"i": i})
            await queue.add("later", {}, {"delay": 3_600_000})
        finally:
            await queue.close()


RUN_CLI = "import sys; from bot.cli import main; sys.exit(main())"


@dataclass(frozen=True)
class Run:
    argv: list[str]
    cwd: str | None = None  # a source tree: `python -c` puts the working directory first


def commands(before: Path | None) -> dict[str, Run]:
    runs = {
        "baseline": Run([sys.executable, "-c", "import redis.asyncio"]),
        "help": Run([QUEUEOPS, "--help"]),
        "snapshot": Run([QUEUEOPS, "snapshot"]),
    }
    if before is not None:
        for name in ("help", "snapshot"):
            argv = [sys.executable, "-c", RUN_CLI, *runs[name].argv[1:]]
            runs[f"{name} (before)"] = Run(argv, str(before))
    return runs


def time_one(run: Run, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        run.argv, env=env, cwd=run.cwd, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(run.argv)} exited {done.returncode}: {done.stderr.strip()}")
    return seconds


def measure(url: str, runs: int, before: Path | None) -> dict[str, list[float]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUEOPS_", "PYTHON"))}
    env.update(
        REDIS_URL=url,
        QUEUEOPS_PREFIX=PREFIX,
        QUEUEOPS_STATE_PREFIX=f"{PREFIX}-state",
        QUEUEOPS_QUEUES=",".join(QUEUES),
    )
    argvs = commands(before)
    names = list(argvs)
    for name in (n for n in names if n.startswith("snapshot")):
        run = argvs[name]
        out = subprocess.run(run.argv, env=env, cwd=run.cwd, capture_output=True, text=True)
        if out.returncode != 0 or not all(q in out.stdout for q in QUEUES):
            raise SystemExit(f"{name} does not show the bench's queues:\n{out.stdout}{out.stderr}")
    for name in names:  # warm-up: .pyc files, the OS's file cache
        time_one(argvs[name], env)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(runs):
        turn = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in turn:
            times[name].append(time_one(argvs[name], env))
    return times


def report(times: dict[str, list[float]]) -> dict[str, object]:
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    base = medians["baseline"]
    return {
        "runs": len(times["baseline"]),
        "python": sys.version.split()[0],
        "commands": {
            name: {
                "medianMs": round(medians[name] * 1000, 1),
                "minMs": round(min(ts) * 1000, 1),
                "maxMs": round(max(ts) * 1000, 1),
                "overBaseline": round(medians[name] / base, 2),
                **({"goal": GOALS[name]} if name in GOALS else {}),
                **(
                    {"overBefore": round(medians[name] / medians[f"{name} (before)"], 2)}
                    if f"{name} (before)" in medians
                    else {}
                ),
            }
            for name, ts in times.items()
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="cold runs of each (default 15)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--before", type=Path, metavar="DIR", help="also time the queueops source tree at DIR"
    )
    args = parser.parse_args()
    with embedded_redis() as (url, _):
        asyncio.run(fill(url))
        result = report(measure(url, args.runs, args.before))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rows = result["commands"]
    assert isinstance(rows, dict)
    print(f"{result['runs']} cold runs each, alternating (Python {result['python']})")
    print(f"{'':<18} {'median':>9} {'min':>9} {'max':>9} {'/ baseline':>11}  goal")
    for name, row in rows.items():
        goal = f"<= {row['goal']}x" if "goal" in row else ""
        if "overBefore" in row:
            goal += f"  ({row['overBefore']:.2f}x the before)"
        print(
            f"{name:<18} {row['medianMs']:>7.1f}ms {row['minMs']:>7.1f}ms {row['maxMs']:>7.1f}ms"
            f" {row['overBaseline']:>10.2f}x  {goal}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
