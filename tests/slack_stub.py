"""A stand-in for Slack's Web API and response URLs, on a real loopback HTTP server.

queueops talks to it through SLACK_API_URL exactly as it would to Slack; the stand-in
records every call so tests can assert on what Slack would have received, and answers
with canned bodies (per method) that tests can change, including errors and 429s.
Modelled on bolt-python's tests/mock_web_api_server.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Call:
    method: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.perf_counter)


@dataclass
class SlackStub:
    calls: list[Call] = field(default_factory=list)
    responses: dict[str, Any] = field(default_factory=dict)
    group_members: dict[str, list[str]] = field(default_factory=dict)
    queued: dict[str, list[Any]] = field(default_factory=dict)
    """Answers used once each, before the defaults: errors, 429s, outages."""
    server: TestServer | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def api_url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/api/"))

    def response_url(self, name: str = "r1") -> str:
        assert self.server is not None
        return str(self.server.make_url(f"/respond/{name}"))

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, method: str, count: int = 1, *, within: float = 5.0) -> list[Call]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.of(method)) >= count), within
            )
        return self.of(method)

    async def _record(self, method: str, request: web.Request) -> None:
        raw = await request.text() if request.method == "POST" else ""
        # The raw query: aiohttp's `query_string` is decoded already, and decoding it again
        # would turn a percent-encoded value (a link's `%7B`) into what it encodes.
        query = request.rel_url.raw_query_string
        body: dict[str, Any] = {k: v[0] for k, v in parse_qs(query).items()}
        if request.content_type == "application/json":
            body.update(json.loads(raw) if raw else {})
        else:
            body.update({k: v[0] for k, v in parse_qs(raw).items()})
        async with self._changed:
            self.calls.append(Call(method, body, dict(request.headers)))
            self._changed.notify_all()

    async def api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        await self._record(method, request)
        if self.queued.get(method):
            once = self.queued[method].pop(0)
            return once if isinstance(once, web.Response) else web.json_response(once)
        canned = self.responses.get(method)
        if isinstance(canned, web.Response):
            return canned
        if canned is not None:
            return web.json_response(canned)
        if method == "auth.test":
            return web.json_response(
                {
                    "ok": True,
                    "user_id": "UBOT",
                    "team_id": "T0001",
                    "bot_id": "B0001",
                    "url": "https://example.slack.com/",
                }
            )
        n = len(self.of(method))
        if method == "conversations.create":
            call = self.of(method)[-1]
            return web.json_response(
                {"ok": True, "channel": {"id": f"C0INC{n}", "name": call.body.get("name")}}
            )
        if method in ("chat.postMessage", "chat.update"):
            return web.json_response({"ok": True, "channel": "C", "ts": f"1700000000.{n:06d}"})
        if method == "chat.getPermalink":
            call = self.of(method)[-1]
            channel, ts = call.body.get("channel", ""), str(call.body.get("message_ts", ""))
            return web.json_response(
                {
                    "ok": True,
                    "channel": channel,
                    "permalink": f"https://example.slack.com/archives/{channel}/p"
                    + ts.replace(".", ""),
                }
            )
        if method == "bookmarks.add":
            call = self.of(method)[-1]
            return web.json_response({"ok": True, "bookmark": {"id": f"Bk{n:04d}", **call.body}})
        if method == "files.getUploadURLExternal":
            assert self.server is not None
            return web.json_response(
                {
                    "ok": True,
                    "file_id": f"F{n}",
                    "upload_url": str(self.server.make_url(f"/upload/F{n}")),
                }
            )
        if method == "files.completeUploadExternal":
            return web.json_response({"ok": True, "files": [{"id": "F1", "title": "chart"}]})
        if method == "usergroups.users.list":
            call = self.of(method)[-1]
            group = call.body.get("usergroup", "")
            return web.json_response({"ok": True, "users": self.group_members.get(group, [])})
        return web.json_response({"ok": True})

    async def upload(self, request: web.Request) -> web.Response:
        data = await request.read()
        async with self._changed:
            self.calls.append(
                Call(
                    "upload",
                    {
                        "size": len(data),
                        "png": data[:8] == b"\x89PNG\r\n\x1a\n",
                        # A text file's content (a postmortem's Markdown); a PNG's is left out.
                        "content": ""
                        if data[:8] == b"\x89PNG\r\n\x1a\n"
                        else data.decode("utf-8", "replace"),
                    },
                    dict(request.headers),
                )
            )
            self._changed.notify_all()
        return web.Response(text=f"OK - {len(data)}")

    async def respond(self, request: web.Request) -> web.Response:
        await self._record(f"respond:{request.match_info['name']}", request)
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self.api)
        app.router.add_post("/respond/{name}", self.respond)
        app.router.add_post("/upload/{file}", self.upload)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()
