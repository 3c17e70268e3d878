"""`/queue` over HTTP, answered before Bolt: the signature checked, the ack sent at once, the
command run in the background once the acks of the burst it came in went out.

Why not through Bolt (measured with bench/slack_ack.py, 50 `/queue snapshot` at once): Bolt
answers a slash command only when its listener runner, polling every 10 ms, sees that the
listener called ack(), and its middleware (request parsing, authorization by auth.test,
listener matching) runs first; meanwhile the commands acked earlier run on the same event
loop, so the later acks waited behind their replies' work. Slack allows 3 s for an ack and
retries (the command runs twice) when it is late. Here the ack is the HTTP answer itself, and
a command's work starts once the requests around it are answered: those still being answered
when it was accepted (a body arriving slowly), and those arriving after it until QUIET_S
passes without one (the rest of a burst), at most ACKS_FIRST_WITHIN_S in all. A lone command
waits QUIET_S; fifty at once are all acked before the first one's work starts, which is what
brought their ack p50 to that of a bare handler checking the signature (bench/README.md).
A slash command needs nothing from Bolt's authorization: the request is
proven by its signature, the reply goes to its response_url, and the Web API client carries
the bot token itself (/readyz still checks the token with auth.test).

The same SlackHandlers method runs the command, so roles, confirmations, the audit, the rate
limit and the replies are Bolt's path exactly. Everything else (buttons, shortcuts, views,
Socket Mode, other commands) stays on Bolt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from bot.slack.app import SlackHandlers

log = logging.getLogger(__name__)

COMMAND = "/queue"
FORM = "application/x-www-form-urlencoded"
ACKS_FIRST_WITHIN_S = 1.0
"""How long a command's work waits at most for the other requests to be answered: a third of
Slack's 3 s, so a stalled request or an endless stream delays the work without risking it."""
QUIET_S = 0.005
"""No request arrived for this long: the burst is over (on loopback, 50 requests arrive about
0.3 ms apart)."""


class SlashCommands:
    """Acks signed `/queue` requests itself and runs them through SlackHandlers."""

    acks_first_within_s = ACKS_FIRST_WITHIN_S
    quiet_s = QUIET_S

    def __init__(self, handlers: SlackHandlers, signing_secret: str) -> None:
        self._handlers = handlers
        self._verifier: SignatureVerifier | None = None
        try:
            self._verifier = SignatureVerifier(signing_secret)
        except ValueError:  # blank: no request can be signed right, each one is a 401
            log.error("SLACK_SIGNING_SECRET is blank: every /queue command is refused (401)")
        self._answering: set[asyncio.Future[None]] = set()
        self._last_arrival = 0.0  # loop time
        self._last_admitted: asyncio.Future[None] | None = None
        self._running: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Around the handling of every request to /slack/events (Bolt's too): while it is
        being answered, and for quiet_s after it arrived, commands wait to start their work."""
        loop = asyncio.get_running_loop()
        self._last_arrival = loop.time()
        done = loop.create_future()
        self._answering.add(done)
        try:
            yield
        finally:
            self._answering.discard(done)
            done.set_result(None)

    def accept(self, body: bytes, headers: Mapping[str, str]) -> web.Response | None:
        """The answer to a `/queue` slash command (200 and the command started, or 401 when
        it is not signed right); None for anything else, which is Bolt's to answer.

        The timestamp header is known to be digits (the route checks it first)."""
        if not body.startswith(b"command=") and b"&command=" not in body:
            return None
        try:
            form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            return None
        url = form.get("response_url")
        if form.get("command") != COMMAND or "payload" in form or not url:
            return None
        if self._verifier is None or not self._verifier.is_valid(
            body,
            headers.get("X-Slack-Request-Timestamp"),
            headers.get("X-Slack-Signature"),
        ):
            return web.json_response({"error": "invalid request"}, status=401)
        ahead, self._last_admitted = self._last_admitted, asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            self._run(form, url, set(self._answering), ahead, self._last_admitted)
        )
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return web.Response(status=200)

    async def _run(
        self,
        command: dict[str, Any],
        url: str,
        pending: set[asyncio.Future[None]],
        ahead: asyncio.Future[None] | None,
        admitted: asyncio.Future[None],
    ) -> None:
        handlers = self._handlers
        async with handlers.dispatcher.tracking():  # counted at once, for a clean shutdown
            try:
                await self._acks_first(pending)
                if ahead is not None:  # commands start in the order they came (a burst's
                    await asyncio.shield(ahead)  # waits end together, in no set order)
            finally:
                admitted.set_result(None)
            try:
                await handlers.run_command(command, handlers.responses.respond(url))
            except Exception:  # as Bolt's listener error handler: logged, the ack is sent
                log.exception("/queue from %s failed", command.get("user_id"))

    async def _acks_first(self, pending: set[asyncio.Future[None]]) -> None:
        """Until `pending` are answered and no request arrived for quiet_s, or the bound."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self.acks_first_within_s
        if pending:
            await asyncio.wait(pending, timeout=self.acks_first_within_s)
        while True:  # sleeps to the deadline; an arrival meanwhile moves it, so look again
            now = loop.time()
            left = min(self._last_arrival + self.quiet_s, until) - now
            if left <= 0:
                return
            await asyncio.sleep(left)
