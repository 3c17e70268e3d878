"""tests/interop/drain-endpoint.mjs, seed 001's drain endpoint on npm bullmq, as a fixture:
a real app for queueops to drain. It runs on the test's prefix; jobs are added with PyPI
bullmq; the conftest `prefix` fixture deletes every key of the prefix afterwards."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from bullmq import Queue
from node_bullmq import INTEROP_DIR, node_available, node_unavailable_reason

SCRIPT = INTEROP_DIR / "drain-endpoint.mjs"
DRAIN_PATH = "/api/v1/cron/drain-queues"
TOKEN = "tok-smoke-1"


@dataclass
class Endpoint:
    url: str
    proc: asyncio.subprocess.Process

    async def log_line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 5)
        assert line, "the endpoint closed stdout"
        entry: dict[str, Any] = json.loads(line)
        return entry

    async def post(
        self, http: httpx.AsyncClient, **kw: Any
    ) -> tuple[httpx.Response, dict[str, Any]]:
        """POST to the drain path; return the response and the request's stdout log line."""
        resp = await http.post(self.url + DRAIN_PATH, **kw)
        return resp, await self.log_line()


async def start_endpoint(prefix: str, redis_url: str, **env_extra: str) -> Endpoint:
    """The endpoint as a subprocess; CRON_SECRET=TOKEN unless `env_extra` says otherwise."""
    if not node_available():
        if os.environ.get("CI"):
            pytest.fail(node_unavailable_reason())
        pytest.skip(node_unavailable_reason())
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DRAIN_QUEUES_TOKEN", "CRON_TOKEN", "TOKENS_FILE", "CRON_SECRET")
    }
    env.update(
        {
            "REDIS_URL": redis_url,
            "PREFIX": prefix,
            "QUEUES": "a,b",
            "PORT": "0",
            "CRON_SECRET": TOKEN,
            **env_extra,
        }
    )
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(SCRIPT),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 10)
    if not first:
        assert proc.stderr is not None
        err = await proc.stderr.read()
        pytest.fail(f"drain-endpoint did not start: {err.decode(errors='replace')}")
    port = json.loads(first)["listening"]
    return Endpoint(f"http://127.0.0.1:{port}", proc)


async def stop_endpoint(endpoint: Endpoint) -> None:
    proc = endpoint.proc
    if proc.returncode is None:
        proc.terminate()
        try:
            code = await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert code == 0, f"drain-endpoint exited {code} on SIGTERM"


@pytest_asyncio.fixture
async def endpoint(prefix: str, redis_url: str) -> AsyncIterator[Endpoint]:
    started = await start_endpoint(prefix, redis_url)
    try:
        yield started
    finally:
        await stop_endpoint(started)


async def add_jobs(redis_url: str, prefix: str, queue: str, names: list[str]) -> None:
    q = Queue(queue, {"prefix": prefix, "connection": redis_url})
    try:
        for n, name in enumerate(names):
            await q.add(name, {"n": n})
    finally:
        await q.close()


async def requests_seen(endpoint: Endpoint, within: float = 0.3) -> list[dict[str, Any]]:
    """The endpoint's log lines that arrive within `within` seconds."""
    lines = []
    while True:
        try:
            lines.append(await asyncio.wait_for(endpoint.log_line(), within))
        except TimeoutError:
            return lines
