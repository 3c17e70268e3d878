"""What the alert tests (in process and against the real `serve`) share: raw HTTP written in
pieces, chunked bodies, stream entries as an older queueops stored them, and waiting for a
condition instead of for time."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_until(
    check: Callable[[], Awaitable[Any]], *, within: float = 10.0, every: float = 0.02
) -> Any:
    """Poll `check` until it returns something truthy (a condition, not a fixed sleep)."""
    deadline = time.monotonic() + within
    while not (found := await check()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(every)
    return found


def request_head(path: str, token: str, extra: str) -> str:
    """A POST's head, `extra` being the framing header(s) (Content-Length or chunked)."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: queueops\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nConnection: close\r\n{extra}\r\n"
    )


def chunked(data: bytes, size: int) -> list[bytes]:
    """`data` in HTTP/1.1 chunks of `size`, with the closing chunk."""
    pieces = [
        f"{len(data[i : i + size]):x}\r\n".encode() + data[i : i + size] + b"\r\n"
        for i in range(0, len(data), size)
    ]
    return [*pieces, b"0\r\n\r\n"]


async def raw_request(
    host: str, port: int, head: str, pieces: list[bytes], *, pause: float = 0.05
) -> tuple[int, dict[str, Any]]:
    """One request written to a raw socket: the head, then each piece in its own write
    with a pause (so the server gets the body in several TCP reads); the status and body."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head.encode())
        await writer.drain()
        for piece in pieces:
            await asyncio.sleep(pause)
            writer.write(piece)
            await writer.drain()
        status_line = await reader.readline()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), json.loads(body or b"{}")
    finally:
        writer.close()


def stored_event_json(title: str, starts_at: str, group: str, **more: Any) -> str:
    """A stream entry as an older queueops stored it, before intake checked startsAt."""
    event = {"source": "generic", "group_key": group, "status": "firing", "title": title}
    return json.dumps({**event, "starts_at": starts_at, **more})
