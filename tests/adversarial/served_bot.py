"""What the adversarial suite runs: `queueops serve` as a subprocess (ServedBot) and a Slack
stand-in whose channels exist (SlackWorld). The fixtures are in conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from slack_stub import Call, SlackStub

from bot.embedded_redis import free_port

ALERT_TOKEN = "adversarial-token"
START_WITHIN_S = 15.0
TALLY: Counter[str] = Counter()
"""bad_inputs (refused: 4xx, or 503 over the bound), faults (injected), accepted (200 from
intake), handled (incident channels opened), parked (poison entries dead-lettered)."""


@dataclass
class SlackWorld(SlackStub):
    """SlackStub with channels that exist: conversations.create of a taken name answers
    `name_taken`, conversations.list lists them with their creator, and `hold(method)`
    keeps that method's answers back until `release(method)` (a caller that went away
    meanwhile, killed, never sees it)."""

    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    held: dict[str, asyncio.Event] = field(default_factory=dict)

    def add_persons_channel(self, name: str, creator: str = "UPERSON") -> str:
        channel_id = f"CP{len(self.channels):04d}"
        self.channels[name] = {"id": channel_id, "name": name, "creator": creator}
        return channel_id

    def hold(self, method: str) -> None:
        self.held[method] = asyncio.Event()

    def release(self, method: str) -> None:
        if method in self.held:
            self.held.pop(method).set()

    async def api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        gate = self.held.get(method)
        if gate is not None:  # seen as "<method>:held" now, answered once released
            async with self._changed:
                self.calls.append(Call(f"{method}:held", {}, dict(request.headers)))
                self._changed.notify_all()
            await gate.wait()
        if method == "conversations.create":
            await self._record(method, request)
            name = str(self.of(method)[-1].body.get("name"))
            if name in self.channels:
                return web.json_response({"ok": False, "error": "name_taken"})
            channel = {"id": f"C0INC{len(self.channels) + 1}", "name": name, "creator": "UBOT"}
            self.channels[name] = channel
            return web.json_response({"ok": True, "channel": channel})
        if method == "conversations.list":
            await self._record(method, request)
            return web.json_response({"ok": True, "channels": list(self.channels.values())})
        return await super().api(request)


def serve_command() -> list[str]:
    script = Path(sys.executable).with_name("queueops")
    return [str(script), "serve"] if script.exists() else [sys.executable, "-m", "bot.cli", "serve"]


@dataclass
class ServedBot:
    """One `queueops serve` subprocess on a free port. `start()` (again after `kill()` or
    `stop()`) waits for /healthz; `kill()` is SIGKILL, `stop()` SIGTERM."""

    env: dict[str, str]
    slack: SlackWorld
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state_prefix(self) -> str:
        return self.env["QUEUEOPS_STATE_PREFIX"]

    async def start(self) -> None:
        self.starts += 1
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *serve_command(),
                env={**self.env, "PORT": str(self.port)},
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = asyncio.get_running_loop().time() + START_WITHIN_S
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.returncode is not None:
                    raise AssertionError(f"serve exited {self.proc.returncode}: {self.log()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.url}/healthz") as resp:
                        if resp.status == 200:
                            return
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"serve did not answer /healthz: {self.log()}")
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, as in an OOM kill or a lost host."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                await self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]
