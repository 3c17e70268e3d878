"""Bulk moves in rounds: several script calls in one pipeline, each call sized by measurement.

Production Redis is shared with the workers being rescued, so no call may hold it long
(the bound is 10 ms at a million jobs); but a bulk move of 100,000 jobs in calls sent one
after the other pays a round trip per call. So a round sends several bounded calls in one
pipeline (one round trip; Redis still runs them one at a time, serving other clients in
between), and the number of jobs per call follows how long the calls took.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

TARGET_CALL_MS = 3.0
"""What one call may take, measured from the client (so it includes the network's share):
a third of the 10 ms bound, leaving room for a slower or busier server."""


@dataclass(frozen=True)
class ScriptCall:
    script: AsyncScript
    keys: Sequence[str]
    args: Sequence[str | int]


async def run_round(redis: Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    """Run `calls` in one pipeline, in order; the answers in the same order, a call that
    failed as its exception (the calls before and after it still ran: the caller counts
    what they did before raising).

    EVALSHA only: redis-py's pipeline would check every script with SCRIPT EXISTS on every
    round. A server that does not know a script yet (first use, or after SCRIPT FLUSH)
    answers NOSCRIPT; it is loaded and only those calls are sent again. Rerunning a call
    is safe: every call picks or checks its jobs inside Redis.
    """
    answers: list[Any] = [None] * len(calls)
    pending = list(range(len(calls)))
    for _ in range(2):
        async with redis.pipeline(transaction=False) as pipe:
            for i in pending:
                call = calls[i]
                # Not pipe.evalsha(): redis-py's ClusterPipeline blocks that method (as it
                # blocks EVALSHA in its pipelines), yet routes the same command sent by name
                # to the node of its keys; on a single server it is the same command.
                pipe.execute_command(
                    "EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args
                )
            results = await pipe.execute(raise_on_error=False)
        missing = []
        for i, result in zip(pending, results, strict=True):
            if isinstance(result, NoScriptError):
                missing.append(i)
            else:
                answers[i] = result
        if not missing:
            return answers
        for script in {id(calls[i].script): calls[i].script for i in missing}.values():
            await redis.script_load(script.script)
        pending = missing
    for i in pending:
        answers[i] = NoScriptError(f"script {calls[i].script.sha} could not be loaded")
    return answers


@dataclass
class CallSizer:
    """Jobs per script call: `fixed` if given, else adjusted after each round so that one
    call takes about TARGET_CALL_MS, between `low` and `high`."""

    initial: int
    low: int
    high: int
    fixed: int | None = None
    _size: float = field(init=False)
    _started: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._size = float(self.fixed or self.initial)

    @property
    def size(self) -> int:
        return int(self._size)

    def start(self) -> None:
        self._started = time.perf_counter()

    def done(self, jobs: int, calls: int) -> None:
        """A round of `calls` calls that handled `jobs` jobs, begun at start(), has just
        come back."""
        self.observe(jobs, calls, time.perf_counter() - self._started)

    def observe(self, jobs: int, calls: int, seconds: float) -> None:
        """A round of `calls` calls handled `jobs` jobs in `seconds` (the calls' own
        account of their Redis time, when rounds overlap and the client's clock would
        count other calls' turns too)."""
        if self.fixed is not None or jobs < calls or calls == 0:
            return
        per_job_ms = seconds * 1000 / jobs
        wanted = TARGET_CALL_MS / max(per_job_ms, 1e-6)
        # Grow by at most 2x a round, shrink at once: a slow round is a warning.
        self._size = float(max(self.low, min(self.high, wanted, self._size * 2)))
