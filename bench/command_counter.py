"""Count the Redis commands a block of code sends, with MONITOR on a private Redis.

MONITOR sees every command a client sends (one line per round trip) and, tagged `lua`,
every command a script runs inside. Both are reported: the first is what a client pays in
round trips and what hosted Redis plans bill per request; the second is the work Redis does.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from redis.asyncio import Redis

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


@asynccontextmanager
async def count_commands(url: str) -> AsyncIterator[Tally]:
    """Everything sent to `url` inside the block is counted (the monitor's own lines aside).

    A sentinel ECHO closes the window, so commands still in flight are not missed."""
    tally = Tally()
    monitor_client = Redis.from_url(url, decode_responses=True)
    closer = Redis.from_url(url, decode_responses=True)
    await closer.ping()  # connect now, so only its sentinel ECHO falls inside the window
    started = asyncio.Event()

    async def listen() -> None:
        async with monitor_client.monitor() as m:
            started.set()
            while True:
                info = await m.next_command()
                command = str(info["command"])
                if SENTINEL in command:
                    return
                name = command.split(" ", 1)[0].strip('"').upper()
                if info.get("client_type") == "lua":
                    tally.in_scripts[name] += 1
                else:
                    tally.client[name] += 1

    task = asyncio.create_task(listen())
    await started.wait()
    await asyncio.sleep(0.05)  # MONITOR is registered once the server answered OK
    try:
        yield tally
    finally:
        await closer.echo(SENTINEL)
        await closer.aclose()
        await asyncio.wait_for(task, timeout=30)
        await monitor_client.aclose()
