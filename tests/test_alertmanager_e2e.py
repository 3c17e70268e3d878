"""End to end with a real Prometheus Alertmanager (Debian's prometheus-alertmanager):
fire with amtool, repeat, restart the bot, resolve. Slack is the recording stand-in."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from slack_helpers import REDIS_URL
from slack_stub import SlackStub

from bot.config import load_settings
from bot.embedded_redis import free_port
from bot.http_app import build_app

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
TOKEN = "example-token"


def _need(binary: str) -> None:
    if not (shutil.which(binary) or os.path.exists(binary)):
        message = f"{binary} is not installed (apt-get install prometheus-alertmanager)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """(its URL, the port it will send to): a real Alertmanager, quick to group and repeat."""
    _need(ALERTMANAGER)
    _need("amtool")
    bot_port, am_port = free_port(), free_port()
    (tmp_path / "am.yml").write_text(f"""
route:
  receiver: qo
  group_by: [alertname, queue]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 2s
receivers:
  - name: qo
    webhook_configs:
      - url: http://127.0.0.1:{bot_port}/alerts/alertmanager
        send_resolved: true
        http_config:
          authorization:
            credentials: {TOKEN}
""")
    proc = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={tmp_path / 'am.yml'}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield f"http://127.0.0.1:{am_port}", bot_port
    proc.terminate()
    proc.wait(timeout=10)


async def amtool(url: str, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "amtool",
        f"--alertmanager.url={url}",
        "alert",
        "add",
        "alertname=QueueBacklog",
        "queue=batch-jobs",
        "severity=page",
        "--annotation=summary=batch-jobs backlog over 1000",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


@pytest_asyncio.fixture
async def bot_at(slack: SlackStub, prefix: str) -> AsyncIterator[Any]:
    runners: list[web.AppRunner] = []

    async def start(port: int) -> web.AppRunner:
        settings = load_settings(
            redis_url=REDIS_URL,
            prefix=prefix,
            state_prefix=f"{prefix}-state",
            slack_bot_token="xoxb-e2e",
            slack_signing_secret="e2e",
            slack_api_url=slack.api_url,
            alert_webhook_token=TOKEN,
            incident_invite="UONCALL1",
        )
        runner = web.AppRunner(await build_app(settings))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return runner

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_alertmanager_fires_repeats_survives_a_restart_and_resolves(
    alertmanager: tuple[str, int],
    bot_at: Any,
    slack: SlackStub,
    redis: aioredis.Redis,
    prefix: str,
) -> None:
    am_url, port = alertmanager
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            try:
                async with http.get(f"{am_url}/-/ready") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    runner = await bot_at(port)
    await amtool(am_url)
    [created] = await slack.wait_for("conversations.create", within=15)
    assert (
        created.body["name"].startswith("inc-")
        and "queuebacklog-batch-jobs" in created.body["name"]
    )
    await slack.wait_for("pins.add", within=10)
    assert slack.of("conversations.invite")[0].body["users"] == "UONCALL1"
    first = slack.of("chat.postMessage")[0]
    assert "QueueBacklog on batch-jobs" in str(first.body["blocks"])

    stream = f"{prefix}-state:alerts"
    for _ in range(100):  # Alertmanager repeats the group every 2 s
        if await redis.xlen(stream) >= 3:
            break
        await asyncio.sleep(0.1)
    assert await redis.xlen(stream) >= 3

    await runner.cleanup()  # a restart of the bot
    await bot_at(port)
    seen = await redis.xlen(stream)
    for _ in range(100):
        if await redis.xlen(stream) > seen:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    assert len(slack.of("conversations.create")) == 1

    await amtool(am_url, f"--end={datetime.now(UTC).isoformat(timespec='seconds')}")
    posts = await slack.wait_for("chat.postMessage", 3, within=15)
    assert "Resolved" in str(posts[1].body["blocks"])
    assert posts[2].body["text"].startswith("Postmortem: ")
    assert len(slack.of("conversations.create")) == 1
