"""Replies to a command's response_url over one shared HTTP session.

Bolt's `respond` builds a new slack_sdk webhook client for each reply, and with it a new
aiohttp ClientSession and a new TCP (and TLS) connection to Slack: under 50 commands at once
that was a connection setup per reply on the event loop. Here every reply goes through one
session, whose connection pool keeps the connections to Slack open between replies. The
message is the same JSON Bolt would send (slack_sdk's webhook client sends it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from slack_sdk.webhook.async_client import AsyncWebhookClient
from slack_sdk.webhook.webhook_response import WebhookResponse

TIMEOUT_S = 30

Respond = Callable[..., Awaitable[Any]]


class ResponseUrls:
    """`respond(url)` gives a Bolt-compatible `respond` for that response_url."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _shared(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop (aiohttp requires one).
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        return self._session

    def respond(self, url: str) -> Respond:
        async def send(
            text: str = "",
            blocks: Sequence[dict[str, Any]] | None = None,
            response_type: str | None = None,
            replace_original: bool | None = None,
        ) -> WebhookResponse:
            client = AsyncWebhookClient(url=url, session=self._shared(), timeout=TIMEOUT_S)
            message: dict[str, Any] = {"text": text}
            if blocks is not None:
                message["blocks"] = list(blocks)
            if response_type is not None:
                message["response_type"] = response_type
            if replace_original is not None:
                message["replace_original"] = replace_original
            return await client.send_dict(message)

        return send

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
