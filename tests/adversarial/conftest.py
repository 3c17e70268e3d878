"""The adversarial suite: the real `queueops serve`, as a subprocess, attacked over real
sockets. Redis is the test Redis (a fresh prefix per test), Slack a stand-in on loopback
that keeps its channels (so a taken name is `name_taken`, as in Slack) and can hold a
method's answers (a slow Slack, to kill `serve` in the middle of a call).

`served` is the fixture other adversarial tests reuse: a running `serve` with its base
URL, its Slack stand-in, and kill / restart for fault injection. Every test adds what it
tried to TALLY; the session prints the totals (bad inputs, faults, accepted, handled).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from served_bot import ALERT_TOKEN, TALLY, ServedBot, SlackWorld
from slack_helpers import BOT_TOKEN, REDIS_URL, SECRET

NodeCall = Callable[..., Awaitable[Any]]
"""Also here because tests in this folder import it (and REDIS_URL) `from conftest`, and
this conftest is the one that name finds while they are collected."""
__all__ = ["REDIS_URL", "NodeCall"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLY:
        terminalreporter.write_line(
            "adversarial alerts: " + ", ".join(f"{name} {TALLY[name]}" for name in sorted(TALLY))
        )


@pytest_asyncio.fixture
async def slack_world() -> AsyncIterator[SlackWorld]:
    world = SlackWorld()
    await world.start()
    yield world
    for method in list(world.held):
        world.release(method)
    await world.close()


@pytest_asyncio.fixture
async def served(
    redis_url: str, prefix: str, slack_world: SlackWorld, tmp_path: Path
) -> AsyncIterator[ServedBot]:
    """A running `queueops serve` (a real subprocess on a free port, `served.url`) on the
    test Redis (`redis_url`) under this test's prefix (`QUEUEOPS_PREFIX=<prefix>`, state under
    `<prefix>-state`), with Slack on (HTTP mode, signing secret slack_helpers.SECRET) talking
    to `served.slack`, alert intake on (`Bearer ALERT_TOKEN`), and the tick every hour so
    only what a test does happens. Stopped (SIGTERM) after the test; its log is in
    `served.log()`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")
    }
    env.update(
        {
            "REDIS_URL": redis_url,
            "QUEUEOPS_PREFIX": prefix,
            "QUEUEOPS_STATE_PREFIX": f"{prefix}-state",
            "QUEUEOPS_QUEUES": "batch-jobs",
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack_world.api_url,
            "ALERT_WEBHOOK_TOKEN": ALERT_TOKEN,
            "DRAIN_EVERY": "1h",
            "PYTHONUNBUFFERED": "1",
        }
    )
    bot = ServedBot(env, slack_world, tmp_path / "serve.log")
    await bot.start()
    yield bot
    await bot.stop()


@pytest.fixture
def tally() -> Counter[str]:
    return TALLY
