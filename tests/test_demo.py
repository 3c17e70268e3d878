"""`queueops shell --demo` shows everything: its own app's drain endpoint (bot/demo_drain.py)
drains, and the cron, budget, mode, rotate-token and the depth chart work on it."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import httpx
import pytest
from bullmq import Queue
from conftest import REDIS_URL
from test_shell import demo_app_of, refuses, run

from bot.demo_drain import drain_endpoint
from bot.drain import DRAIN_PATH, DrainClient, DrainError
from bot.render_text import SPARKS

TOKEN = "demo-token-1"


async def test_every_command_works_in_the_demo() -> None:
    session = [
        "drain batch-jobs",
        "cron status",
        "cron history",
        "budget",
        "mode",
        "mode cron --yes",
        "mode always-on --yes",
        "mode",
        "mode cron --yes",
        "rotate-token --yes",
        "drain dsar-jobs",
        "snapshot batch-jobs --chart",
        "exit",
    ]
    code, out, err = await run("shell", "--demo", stdin="\n".join(session) + "\n")
    assert code == 0, err
    assert "Traceback" not in out + err
    # drain: the app processed the backlog, through a real Worker
    assert "drained batch-jobs: 1200 processed, 0 failed" in out
    # the cron ran for real at start: a drain (the poison jobs failed), then idle ticks
    assert "drain cron on, every 5m" in out
    assert re.search(r"batch-jobs, dsar-jobs, seed-jobs\s+200\s+31\s+18", out), out
    assert "idle ticks       2" in out and "queueops-shell-demo" in out
    assert "(1 per idle tick, measured, + 1 blocking wait for instant drains" in out
    # mode through the dotenv backend, there and back (`mode` reads the .env back)
    assert "worker mode: cron (backend dotenv, WORKER_INPROCESS=0)" in out
    assert "worker mode is now always-on (verified); drain cron off" in out
    assert "worker mode: always-on (backend dotenv, WORKER_INPROCESS=1)" in out
    assert "worker mode is now cron (verified)" in out
    # rotation: the app follows its .env, so it takes the new token at once, and the bot
    # drains with it afterwards
    assert "drain token rotated through dotenv" in out
    assert "drained dsar-jobs: 4 processed, 0 failed" in out
    # the hour of depth samples draws at once
    chart = re.search(r"batch-jobs  ([" + SPARKS + r"]{12,})  min 0, max 1200, now 1200", out)
    assert chart, out
    # and the app is gone with the shell: its port and its .env
    port, folder = demo_app_of(out)
    assert refuses(port) and not folder.exists()


async def test_a_one_shot_rotation_in_the_demo() -> None:
    code, out, err = await run("shell", "--demo", "--yes", "-e", "rotate-token --wait 10s")
    assert code == 0, err
    assert "drain token rotated through dotenv" in out
    port, folder = demo_app_of(out)
    assert refuses(port) and not folder.exists()


async def test_the_demo_ignores_a_real_app_in_the_environment(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as real_app:
        real_app.setblocking(False)
        code, out, err = await run(
            "shell",
            "--demo",
            "-e",
            "drain seed-jobs",
            DRAIN_URL=f"http://127.0.0.1:{real_app.getsockname()[1]}",
            DRAIN_QUEUES_TOKEN="a-real-token",
            WORKER_MODE_BACKEND="dotenv",
            WORKER_MODE_DOTENV=str(tmp_path / "real.env"),
        )
        assert code == 0, out + err
        assert "drained seed-jobs" in out
        with pytest.raises(BlockingIOError):
            real_app.accept()  # never called
    assert not (tmp_path / "real.env").exists()


async def add(prefix: str, queue: str, jobs: list[tuple[str, dict[str, object]]]) -> None:
    q = Queue(queue, {"prefix": prefix, "connection": REDIS_URL})
    try:
        for name, data in jobs:
            await q.add(name, data, {"attempts": 1})
    finally:
        await q.close()


async def test_the_demo_endpoint_keeps_the_contract(tmp_path: Path, prefix: str) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"DRAIN_QUEUES_TOKEN={TOKEN}\nWORKER_INPROCESS=0\n")
    await add(prefix, "a", [("ok", {}), ("poison", {}), ("ok", {}), ("ok", {})])
    with drain_endpoint(REDIS_URL, prefix, ["a", "b"], env_file) as url:
        client = DrainClient(url, TOKEN, attempts=1)
        one = await client.drain("a", max_jobs=1)
        assert (one.total_processed, one.total_failed) == (1, 0)
        rest = await client.drain()
        assert rest.queues["a"].jobs_processed == 2 and rest.queues["a"].jobs_failed == 1
        assert rest.queues["b"].idle_at == 0  # nothing there: already idle
        again = await client.drain("a")
        assert again.total_processed == 0 and again.queues["a"].idle_at == 0

        with pytest.raises(DrainError) as wrong:
            await client.drain("a", token="not-it")
        assert wrong.value.status == 401
        with pytest.raises(DrainError) as unknown:
            await client.drain("nope")
        assert unknown.value.status == 400 and "unknown queue nope" in str(unknown.value)

        # the app follows its .env at every request: a rotation's CRON_TOKEN is accepted
        env_file.write_text(f"DRAIN_QUEUES_TOKEN=new-one\nCRON_TOKEN={TOKEN}\n")
        assert (await client.drain("b")).ok
        assert (await client.drain("b", token="new-one")).ok
        env_file.write_text("DRAIN_QUEUES_TOKEN=new-one\n")
        with pytest.raises(DrainError):
            await client.drain("b")

        async with httpx.AsyncClient() as http:
            bearer = await http.post(
                url + DRAIN_PATH,
                params={"queue": "b"},
                headers={"Authorization": "Bearer new-one"},
            )
            assert bearer.status_code == 200 and bearer.json()["ok"] is True
            bad = await http.post(
                url + DRAIN_PATH,
                params={"maxJobsPerQueue": "1.5"},
                headers={"X-Cron-Secret": "new-one"},
            )
            assert bad.status_code == 400 and "maxJobsPerQueue" in bad.json()["error"]
            assert (await http.get(url + DRAIN_PATH)).status_code == 404
        port = int(url.rsplit(":", 1)[1])
    assert refuses(port)


def test_a_killed_demos_folder_is_removed_by_the_next_demo() -> None:
    import os
    import subprocess
    import tempfile

    from bot.demo import DEMO_FOLDER, _remove_left_behind

    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = Path(tempfile.mkdtemp(prefix=f"{DEMO_FOLDER}{gone.pid}-"))
    (dead / ".env").write_text("DRAIN_QUEUES_TOKEN=x\n")
    alive = Path(tempfile.mkdtemp(prefix=f"{DEMO_FOLDER}{os.getpid()}-"))
    try:
        _remove_left_behind()
        assert not dead.exists() and alive.exists()
    finally:
        for folder in (dead, alive):
            if folder.exists():
                (folder / ".env").unlink(missing_ok=True)
                folder.rmdir()
