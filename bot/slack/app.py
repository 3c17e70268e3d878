"""The Bolt app: `/queue <words>` and the Confirm / Cancel buttons.

Over HTTP, bot/slack/slash.py acks `/queue` itself and calls run_command; in Socket Mode Bolt
acks it (on_queue). The buttons are Bolt's. The command runs through the Dispatcher, and the
reply goes back to the command's response_url over one shared HTTP session
(bot/slack/respond.py). Results are posted in the channel; errors and `help` only to the
person who asked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.audit import redact_text
from bot.charts import draw_png
from bot.config import Settings
from bot.dispatch import Dispatcher
from bot.environments import Environments
from bot.errors import UsageError
from bot.roles import Role
from bot.slack.blocks import as_dicts, confirm_buttons, fallback_text, render_blocks
from bot.slack.confirmations import Confirmations, Pending
from bot.slack.respond import Respond, ResponseUrls
from bot.slack.roles import RoleResolver
from bot.slack.words import split_words
from commands.registry import resolve
from commands.reply import ErrorReply, Reply
from commands.runner import ConfirmationNeeded
from commands.view import Attachment, Chart, Mark, Note
from commands.view import Block as ViewBlock

log = logging.getLogger(__name__)

PRIVATE_COMMANDS = {"help"}
READS_AT_ONCE = 4


class SlackHandlers:
    """The listeners, as methods, so they can be read (and tested) apart from Bolt."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        confirmations: Confirmations,
        roles: RoleResolver,
        client: AsyncWebClient,
        responses: ResponseUrls | None = None,
        *,
        envs: Environments,
    ) -> None:
        self.client = client
        self.dispatcher = dispatcher
        """The default environment's: the audit of button presses, shutdown's count."""
        self.envs = envs
        """Every environment (QUEUEOPS_REDIS_URLS; one when it is unset): where commands run."""
        self.confirmations = confirmations
        self.roles = roles
        self.responses = responses or ResponseUrls()
        self._reads = asyncio.Semaphore(READS_AT_ONCE)

    def _replying(self, payload: dict[str, Any], bolt_respond: Any) -> Respond:
        """The payload's response_url over the shared session; Bolt's own without one."""
        url = payload.get("response_url")
        return self.responses.respond(url) if isinstance(url, str) and url else bolt_respond

    async def close(self) -> None:
        await self.responses.close()

    def _turn_for(self, words: Sequence[str]) -> AbstractAsyncContextManager[Any]:
        """Reads (what a viewer may run: one script call, then rendering) take turns, at most
        READS_AT_ONCE at a time. Fifty people typing `/queue snapshot` during an incident
        otherwise fill the event loop with fifty replies' CPU work, and the acks of the
        requests still arriving wait behind it (Slack allows 3 s). Changes never wait here:
        a drain may run for a minute, and no read should queue behind it."""
        try:
            command, _ = resolve(words)
        except UsageError:
            return nullcontext()
        return self._reads if command.role <= Role.VIEWER else nullcontext()

    async def on_queue(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        """`/queue` through Bolt: Socket Mode (over HTTP, bot/slack/slash.py answers it)."""
        await ack()
        async with self.dispatcher.tracking():
            await self.run_command(command, self._replying(command, respond))

    async def run_command(self, command: dict[str, Any], respond: Respond) -> None:
        """A `/queue` slash command's payload, after the ack: run it, reply to `respond`."""
        user = command["user_id"]
        channel = command.get("channel_id")
        try:
            words = split_words(command.get("text") or "") or ["help"]
        except UsageError as err:
            await self._respond(respond, ErrorReply(message=str(err), exit_code=2))
            return
        try:
            env, words = self.envs.pick(words)
        except UsageError as err:
            await self._respond(respond, ErrorReply(message=str(err), exit_code=2))
            return
        words = words or ["help"]

        async def role_in(name: str) -> Role:
            return await self.roles.role_of(user, name)

        try:
            async with self._turn_for(words):
                outcome = await self.envs.run(
                    env,
                    words,
                    role_in=role_in,
                    actor=f"slack:{user}",
                    transport="slack",
                    channel=channel,
                    confirmed=False,
                )
        except Exception as err:  # a bug: the person still hears back, in one line
            log.exception("/queue %s from %s failed", words[0], user)
            message = f"internal error ({type(err).__name__}); the bot's log has the details"
            await self._respond(respond, ErrorReply(message=message, exit_code=1))
            return
        reply = outcome.reply
        if isinstance(reply, ConfirmationNeeded):
            # The confirmed run goes to the same environment: `--env` rides in its words.
            pinned = [*reply.words, "--env", env] if env is not None else list(reply.words)
            shown = f"{reply.command} --env {env}" if env is not None else reply.command
            token = await self.confirmations.create(
                Pending(words=pinned, requester=user, channel=channel, command=shown)
            )
            blocks = [*render_blocks(reply.view()), confirm_buttons(token, reply.command)]
            await respond(
                text=fallback_text(reply.view()),
                blocks=as_dicts(blocks),
                response_type="in_channel",
            )
            return
        await self._respond(respond, reply, private=outcome.command in PRIVATE_COMMANDS)
        if channel and reply.ok:
            await self._upload_charts(reply.view(), channel)

    async def _upload_charts(self, view: Sequence[ViewBlock], channel: str) -> None:
        """The files a reply carries beside its message: a chart as a PNG, an Attachment
        (a job's whole JSON) as it is."""
        for item in view:
            if isinstance(item, Chart):
                data = {q: pts for q, pts in item.series.items() if len(pts) >= 2}
                if data:
                    await self.client.files_upload_v2(
                        channel=channel,
                        content=await draw_png(data),
                        filename="queue-depth.png",
                        title=item.title,
                    )
            elif isinstance(item, Attachment):
                await self.client.files_upload_v2(
                    channel=channel,
                    content=item.content.encode("utf-8"),
                    filename=item.filename,
                    title=item.title,
                )

    async def on_confirm(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        async with self.dispatcher.tracking():
            await self._decide(body, self._replying(body, respond), confirm=True)

    async def on_cancel(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        async with self.dispatcher.tracking():
            await self._decide(body, self._replying(body, respond), confirm=False)

    async def _decide(self, body: dict[str, Any], respond: Any, *, confirm: bool) -> None:
        user = body["user"]["id"]
        token = str(body["actions"][0].get("value", ""))
        channel = (body.get("channel") or {}).get("id")
        verb = "confirm" if confirm else "cancel"
        pending = await self.confirmations.peek(token)
        if pending is None:
            await self._press(user, Role.ANYONE, channel, f"{verb} (expired)", "refused")
            await self._respond(
                respond,
                ErrorReply(
                    message="this confirmation has expired or was already used; run the command "
                    "again"
                ),
                private=True,
            )
            return
        picked, words = self.envs.pick(pending.words)
        env = self.envs.check(picked)
        dispatcher = await self.envs.dispatcher(env)
        role = await self.roles.role_of(user, env)
        if user != pending.requester and role < Role.ADMIN:
            await self._press(user, role, channel, f"{verb} {pending.command}", "refused")
            await self._respond(
                respond,
                ErrorReply(message=f"only <@{pending.requester}> or an admin may {verb} this"),
                private=True,
            )
            return
        pending = await self.confirmations.take(token)
        if pending is None:  # someone else pressed first
            await self._respond(respond, ErrorReply(message="already handled"), private=True)
            return
        if not confirm:
            await self._press(user, role, channel, f"cancel {pending.command}", "cancelled")
            await respond(
                replace_original=True,
                text=f"cancelled by <@{user}>: {pending.command}",
                blocks=as_dicts(
                    render_blocks([Note(mark=Mark.INFO, text=f"cancelled: {pending.command}")])
                ),
            )
            return
        outcome = await dispatcher.run(
            words,
            actor=f"slack:{user}",
            role=role,
            transport="slack",
            channel=channel,
            confirmed=True,
        )
        view = [
            *outcome.reply.view(),
            Note(mark=Mark.INFO, text=f"confirmed by {user}: {pending.command}"),
        ]
        await respond(
            replace_original=True,
            text=fallback_text(view),
            blocks=as_dicts(render_blocks(view)),
            response_type="in_channel",
        )

    async def _press(
        self, user: str, role: Role, channel: str | None, words: str, outcome: str
    ) -> None:
        """Button presses that run nothing are audited too."""
        if self.dispatcher.audit is not None:
            await self.dispatcher.audit.record_move(
                f"slack:{user}", role.label, channel, f"[button] {words}", outcome
            )

    @staticmethod
    async def _respond(respond: Any, reply: Reply, *, private: bool = False) -> None:
        if isinstance(reply, ErrorReply):  # an error may quote the words, secrets and all
            reply = reply.model_copy(update={"message": redact_text(reply.message)})
        view = reply.view()
        await respond(
            text=fallback_text(view),
            blocks=as_dicts(render_blocks(view)),
            response_type="ephemeral" if private or not reply.ok else "in_channel",
        )


def build_bolt_app(
    settings: Settings,
    handlers: SlackHandlers,
    client: AsyncWebClient,
) -> AsyncApp:
    """The Bolt app on `client` (which carries the bot token and SLACK_API_URL)."""
    secret = settings.slack_signing_secret
    app = AsyncApp(
        client=client,
        signing_secret=secret.get_secret_value() if secret else "",
        # Socket Mode has no HTTP request to sign; HTTP mode must verify every request.
        request_verification_enabled=secret is not None,
        process_before_response=False,
        name="queueops-slack",  # not "queueops": Bolt sets the level of a logger by that name
    )
    app.command("/queue")(handlers.on_queue)
    app.action("queueops_confirm")(handlers.on_confirm)
    app.action("queueops_cancel")(handlers.on_cancel)
    return app
