"""Helpers for driving the real app like Slack does: signed requests, slash commands,
button presses, and the fixtures that start the app with a Slack stand-in."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import pytest_asyncio
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from redis_for_tests import REDIS_URL
from slack_stub import SlackStub

from bot.config import Settings, load_settings
from bot.http_app import build_app

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-1111-2222-abcdefghijklmnop"


def sign(body: str, *, secret: str = SECRET, at: int | None = None) -> dict[str, str]:
    ts = str(at if at is not None else int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[SlackStub]:
    stub = SlackStub()
    await stub.start()
    yield stub
    await stub.close()


MakeBot = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest_asyncio.fixture
async def make_bot(prefix: str, slack: SlackStub) -> AsyncIterator[MakeBot]:
    clients: list[TestClient[Any, Any]] = []

    async def make(**overrides: Any) -> TestClient[Any, Any]:
        values: dict[str, Any] = {
            "redis_url": REDIS_URL,
            "prefix": prefix,
            "state_prefix": f"{prefix}-state",
            "slack_bot_token": BOT_TOKEN,
            "slack_signing_secret": SECRET,
            "slack_api_url": slack.api_url,
            "roles": "admin=UADMIN;operator=UOPS,S0OPS",
            **overrides,
        }
        settings: Settings = load_settings(**values)
        client = TestClient(TestServer(await build_app(settings), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def slash(
    bot: TestClient[Any, Any],
    slack: SlackStub,
    text: str,
    *,
    user: str = "UVIEW",
    reply_to: str = "r1",
    headers: dict[str, str] | None = None,
    channel: str = "C0INCIDENT",
) -> ClientResponse:
    body = urlencode(
        {
            "token": "legacy",
            "team_id": "T0001",
            "channel_id": channel,
            "user_id": user,
            "user_name": user.lower(),
            "command": "/queue",
            "text": text,
            "response_url": slack.response_url(reply_to),
            "trigger_id": "1.2.3",
        }
    )
    return await bot.post("/slack/events", data=body, headers=headers or sign(body))


async def press(
    bot: TestClient[Any, Any],
    slack: SlackStub,
    action_id: str,
    value: str,
    *,
    user: str,
    reply_to: str,
    channel: str = "C0INCIDENT",
) -> ClientResponse:
    payload = {
        "type": "block_actions",
        "team": {"id": "T0001"},
        "user": {"id": user},
        "channel": {"id": channel},
        "api_app_id": "A1",
        "token": "legacy",
        "trigger_id": "1.2.3",
        "response_url": slack.response_url(reply_to),
        "container": {"type": "message", "message_ts": "1.1", "channel_id": channel},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b",
                "value": value,
                "action_ts": "1.2",
            }
        ],
    }
    body = urlencode({"payload": json.dumps(payload)})
    return await bot.post("/slack/events", data=body, headers=sign(body))


def text_of(body: dict[str, Any]) -> str:
    return json.dumps(body.get("blocks", [])) + body.get("text", "")
