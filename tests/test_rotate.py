"""rotate-token against a real drain endpoint whose accepted tokens follow the app's .env
(the test plays the app's restart: it reloads the tokens a moment after the file changes),
while a loop drains with the bot's current token the whole time: never a 401."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from conftest import REDIS_URL
from drain_helpers import start_endpoint, stop_endpoint

from bot.config import load_settings
from bot.deploy.dotenv import parse
from bot.dispatch import make_dispatcher
from bot.drain import DrainError
from bot.roles import Role

OLD = "11112222333344445555666677778888"
DOTENV = f"# app\nDATABASE_URL=postgres://db/app\nDRAIN_QUEUES_TOKEN={OLD}\nWORKER_INPROCESS=0\n"


async def play_the_app(env_file: Path, tokens_file: Path, *, restarts: bool) -> None:
    """Like App Runner: after the variables change, the app restarts (0.3 s here) and then
    accepts DRAIN_QUEUES_TOKEN, CRON_SECRET and CRON_TOKEN as the file says."""
    seen = env_file.read_text()
    while True:
        await asyncio.sleep(0.05)
        text = env_file.read_text()
        if text != seen and restarts:
            seen = text
            await asyncio.sleep(0.3)
            env = parse(text)
            accepted = [
                env[k] for k in ("DRAIN_QUEUES_TOKEN", "CRON_SECRET", "CRON_TOKEN") if env.get(k)
            ]
            tokens_file.write_text(json.dumps({"accepted": accepted}))


async def setup(
    tmp_path: Path, redis: aioredis.Redis, prefix: str, endpoint_url: str
) -> tuple[Path, Any]:
    env_file = tmp_path / ".env"
    env_file.write_text(DOTENV)
    settings = load_settings(
        redis_url=REDIS_URL,
        prefix=prefix,
        state_prefix=f"{prefix}-state",
        queues="a,b",
        drain_url=endpoint_url,
        drain_queues_token=OLD,
        worker_mode_backend="dotenv",
        worker_mode_dotenv=env_file,
    )
    return env_file, make_dispatcher(redis, settings, rate_limited=False)


async def test_rotation_without_a_moment_of_rejection(
    tmp_path: Path, redis: aioredis.Redis, prefix: str
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"accepted": [OLD]}))
    endpoint = await start_endpoint(prefix, REDIS_URL, TOKENS_FILE=str(tokens))
    try:
        env_file, d = await setup(tmp_path, redis, prefix, endpoint.url)
        app = asyncio.create_task(play_the_app(env_file, tokens, restarts=True))
        rejected: list[str] = []
        stop = asyncio.Event()

        async def the_bots_cron() -> int:
            calls = 0
            while not stop.is_set():
                try:
                    await d.drain.drain("a", max_duration_ms=1000)
                    calls += 1
                except DrainError as err:
                    rejected.append(str(err))
                await asyncio.sleep(0.05)
            return calls

        cron = asyncio.create_task(the_bots_cron())
        outcome = await d.run(
            ["rotate-token", "--wait", "20s"],
            actor="test",
            role=Role.ADMIN,
            transport="cli",
            confirmed=True,
            terminal=True,
        )
        await asyncio.sleep(0.5)
        stop.set()
        calls = await cron
        app.cancel()
        assert outcome.reply.ok, getattr(outcome.reply, "message", "")
        assert calls > 5 and rejected == []
        env = parse(env_file.read_text())
        new = env["DRAIN_QUEUES_TOKEN"]
        assert new != OLD and len(new) == 64 and "CRON_TOKEN" not in env
        assert await d.drain.current_token() == new
        assert env_file.read_text() == DOTENV.replace(OLD, new)  # nothing else touched
    finally:
        await stop_endpoint(endpoint)


async def test_an_app_that_never_accepts_is_rolled_back(
    tmp_path: Path, redis: aioredis.Redis, prefix: str
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"accepted": [OLD]}))
    endpoint = await start_endpoint(prefix, REDIS_URL, TOKENS_FILE=str(tokens))
    try:
        env_file, d = await setup(tmp_path, redis, prefix, endpoint.url)
        outcome = await d.run(
            ["rotate-token", "--wait", "2s"],
            actor="test",
            role=Role.ADMIN,
            transport="cli",
            confirmed=True,
            terminal=True,
        )
        assert not outcome.reply.ok and "rolled back" in outcome.reply.message
        assert env_file.read_text() == DOTENV  # byte for byte
        assert await d.drain.current_token() == OLD
        await d.drain.drain("a", max_duration_ms=1000)  # the bot still drains
    finally:
        await stop_endpoint(endpoint)
