"""Running the real `queueops` CLI from a test: a subprocess with the environment the test
gives, bounded in time (a hang fails the test instead of the whole run)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUEUEOPS = str(Path(sys.executable).parent / "queueops")


@dataclass
class Run:
    """What a `queueops` run left: its exit code and what it printed."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def run_cli(
    args: tuple[str, ...], env: Mapping[str, str], *, within: float = 60.0
) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `queueops ARGS`; killed and failed after `within` s."""
    proc = await asyncio.create_subprocess_exec(
        QUEUEOPS,
        *args,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(
            f"queueops {' '.join(args)} still running after {within:g} s"
        ) from None
    return proc.returncode or 0, out.decode(), err.decode()
