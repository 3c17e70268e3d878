"""Drive the real npm ``bullmq`` package from the Python test suite.

queueops reads and rewrites the Redis keys that BullMQ owns. The Python
``bullmq`` port is not the reference for that layout; the Node package is: it
is what the producers and workers queueops operates on actually run. So the
interop tests let Node create the state (jobs in every state, paused queues,
logs, flows) and let Node check what queueops left behind (counts, job hashes,
whether a worker can still process a replayed job).

This module is the thin bridge: it runs ``tests/interop/bullmq-cli.mjs`` (see
that file for the commands and their JSON output) as a subprocess and returns
its parsed JSON output.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any, Final

INTEROP_DIR: Final[Path] = Path(__file__).resolve().parent / "interop"
"""Directory holding the Node package.json, node_modules and the CLI."""

CLI_PATH: Final[Path] = INTEROP_DIR / "bullmq-cli.mjs"
"""The Node CLI around npm bullmq."""

DEFAULT_TIMEOUT_S: Final[float] = 30.0
"""Upper bound for one CLI run; the commands normally take well under a second."""


class NodeBullmqError(RuntimeError):
    """The Node CLI exited non-zero, timed out, or printed something that is not JSON."""

    def __init__(self, command: str, returncode: int | None, stderr: str) -> None:
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        detail = stderr.strip() or "<no stderr>"
        super().__init__(f"bullmq-cli {command!r} failed (exit code {returncode}): {detail}")


def node_available() -> bool:
    """Tell whether the Node side of the interop tests can run at all.

    True when ``node`` is on PATH and ``npm install`` has been run in
    ``tests/interop`` (so ``node_modules/bullmq`` exists). Tests use this to
    skip or fail with a clear message instead of a confusing subprocess error.
    """
    return shutil.which("node") is not None and (INTEROP_DIR / "node_modules" / "bullmq").is_dir()


def node_unavailable_reason() -> str:
    """Explain what is missing when :func:`node_available` is False (for skip messages)."""
    if shutil.which("node") is None:
        return "node is not on PATH (the interop tests need Node.js 20+)"
    if not (INTEROP_DIR / "node_modules" / "bullmq").is_dir():
        return f"npm bullmq is not installed: run `npm ci` in {INTEROP_DIR}"
    return ""


async def node_bullmq(
    command: str,
    args: dict[str, Any],
    redis_url: str,
    *,
    time_limit_s: float = DEFAULT_TIMEOUT_S,
    cluster_nodes: str | None = None,
) -> Any:
    """Run one ``bullmq-cli.mjs`` command against ``redis_url`` and return its JSON output.

    ``args`` is passed as the CLI's JSON argument and must carry ``prefix``
    (the BullMQ key prefix) and the queue name(s) the command needs. The return
    value is whatever JSON document the command printed (a dict for most
    commands, ``None`` for ``job`` on a missing id).

    Raises :class:`NodeBullmqError` (with the CLI's stderr) if the command
    exits non-zero, runs longer than ``time_limit_s`` seconds, or prints invalid JSON.

    ``cluster_nodes`` (``"host:port,host:port,..."``, e.g. ``RedisClusterForTests.nodes_csv``)
    makes the CLI connect to a Redis Cluster through those nodes instead of ``redis_url``.
    Without it, a ``REDIS_CLUSTER_NODES`` in this process's environment is not passed on:
    whether Node talks to a cluster is the caller's choice, not the shell's.
    """
    env = {**os.environ, "REDIS_URL": redis_url}
    env.pop("REDIS_CLUSTER_NODES", None)
    if cluster_nodes is not None:
        env["REDIS_CLUSTER_NODES"] = cluster_nodes
    # The CLI has its own watchdog; make it fire before ours so its message wins.
    env.setdefault("BULLMQ_CLI_TIMEOUT_MS", str(int(max(time_limit_s - 1.0, 1.0) * 1000)))
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(CLI_PATH),
        command,
        json.dumps(args),
        cwd=str(INTEROP_DIR),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), time_limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise NodeBullmqError(command, None, f"timed out after {time_limit_s} s") from None
    err_text = stderr.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        raise NodeBullmqError(command, proc.returncode, err_text)
    try:
        return json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise NodeBullmqError(
            command,
            proc.returncode,
            f"stdout is not JSON ({exc}): {stdout[:500]!r}; stderr: {err_text}",
        ) from exc
