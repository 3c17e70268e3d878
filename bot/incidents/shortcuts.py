"""The two message shortcuts: "Declare queue incident" and "Add to incident timeline".

Declare opens a dialog (title from the message's first line, queue, severity) and, on
submit, declares through the desk exactly as `/queue incident declare` does, with the
message linked and quoted in the new channel. The message is the declaration's identity
(SlackIncidentDesk.declare_from_message): submitting twice, or two people using the
shortcut on the same message, gives one incident.

Add to timeline puts the message (who said it, when, what, its link) in the incident's
timeline, which the postmortem lists: at once when the message is in the incident's own
channel, else after picking one of the open incidents in a dialog.

Both are an operator's moves (they change an incident), checked when the shortcut is used
and again on submit (a role may change in between); a refusal is one line to that person
only. Both are audited as `[shortcut] …`, like button presses.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

from pydantic import ValidationError
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import (
    InputBlock,
    Option,
    PlainTextInputElement,
    StaticSelectElement,
)
from slack_sdk.models.views import View
from slack_sdk.web.async_client import AsyncWebClient

from bot.dispatch import Dispatcher
from bot.errors import QueueOpsError
from bot.incidents.channels import Incidents
from bot.incidents.desk import SlackIncidentDesk, SourceMessage
from bot.incidents.listing import open_incidents
from bot.roles import Role
from bot.slack.roles import RoleResolver
from commands.incident import SEVERITY_CHOICES, DeclareRequest

log = logging.getLogger(__name__)

DECLARE = "declare_queue_incident"
"""The callback id of the "Declare queue incident" message shortcut (manifest.yml)."""
ADD_TO_TIMELINE = "add_to_incident_timeline"
"""The callback id of the "Add to incident timeline" message shortcut (manifest.yml)."""
DECLARE_MODAL = "declare_queue_incident_modal"
TIMELINE_MODAL = "add_to_incident_timeline_modal"
METADATA_MAX = 3000
"""Slack's limit on a view's private_metadata, where the message rides to the submit."""
MESSAGE_KEPT = 1500
"""How much of the message is carried and quoted (the link leads to all of it)."""
PICKABLE = 100
"""Open incidents offered in the timeline dialog (Slack's limit on a select's options)."""
NEEDS_OPERATOR = "{doing} needs the operator role (QUEUEOPS_ROLES)"


def source_of(body: dict[str, Any], permalink: str | None) -> SourceMessage:
    """The message a shortcut was used on, as Slack sends it (message_action)."""
    message = body.get("message") or {}
    return SourceMessage(
        channel=str((body.get("channel") or {}).get("id", "")),
        ts=str(message.get("ts") or body.get("message_ts") or ""),
        text=str(message.get("text") or "")[:MESSAGE_KEPT],
        author=str(message["user"]) if message.get("user") else None,
        permalink=permalink,
    )


def metadata_of(source: SourceMessage, **more: str) -> str:
    """The message for the submit, within Slack's 3000 characters (the text shortened
    until it fits: JSON may grow it)."""
    text = source.text
    while True:
        data = {
            "channel": source.channel,
            "ts": source.ts,
            "author": source.author,
            "permalink": source.permalink,
            "text": text,
            **more,
        }
        encoded = json.dumps(data, ensure_ascii=False)
        if len(encoded) <= METADATA_MAX:
            return encoded
        text = text[: len(text) // 2]


def source_from_metadata(raw: str) -> tuple[SourceMessage, dict[str, Any]]:
    """The message a dialog carried; an empty one when the metadata is not ours (a view
    opened elsewhere with this callback id): the declaration goes on without a quote."""
    try:
        data: Any = json.loads(raw or "{}")
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    return (
        SourceMessage(
            channel=str(data.get("channel") or ""),
            ts=str(data.get("ts") or ""),
            text=str(data.get("text") or ""),
            author=data.get("author") or None,
            permalink=data.get("permalink") or None,
        ),
        data,
    )


def first_line(text: str, limit: int = 150) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def ts_ms(ts: str) -> int | None:
    """A Slack message ts ("1700000000.000100") in ms, or None when it is not one."""
    try:
        return int(float(ts) * 1000)
    except ValueError:
        return None


def timeline_text(source: SourceMessage, by: str) -> str:
    """The timeline's entry for a message: who said what, where it is, who added it."""
    who = f"slack:{source.author}" if source.author else "someone"
    text = " ".join(source.text.split())
    text = text if len(text) <= 400 else text[:399] + "…"
    link = f" ({source.permalink})" if source.permalink else ""
    return f"{who} said: {text}{link} (added by {by})"


class IncidentShortcuts:
    def __init__(
        self,
        dispatcher: Dispatcher,
        incidents: Incidents,
        desk: SlackIncidentDesk,
        roles: RoleResolver,
        client: AsyncWebClient,
    ) -> None:
        self.dispatcher = dispatcher
        self.incidents = incidents
        self.desk = desk
        self.roles = roles
        self.client = client

    def register(self, app: AsyncApp) -> None:
        app.shortcut(DECLARE)(self.on_declare)
        app.view(DECLARE_MODAL)(self.on_declare_submit)
        app.shortcut(ADD_TO_TIMELINE)(self.on_add_to_timeline)
        app.view(TIMELINE_MODAL)(self.on_timeline_submit)

    # -- shared ----------------------------------------------------------------------------

    async def _permalink(self, channel: str, ts: str) -> str | None:
        """The message's link (chat.getPermalink needs no scope); None when Slack will not
        say (the bot cannot see that channel): the quote is still there."""
        if not channel or not ts:
            return None
        try:
            found = await self.client.chat_getPermalink(channel=channel, message_ts=ts)
        except SlackApiError as err:
            log.info("no permalink for %s/%s: %s", channel, ts, err.response.get("error"))
            return None
        link = found.get("permalink")
        return str(link) if link else None

    async def _audit(self, user: str, role: Role, channel: str, words: str, outcome: str) -> None:
        if self.dispatcher.audit is not None:
            await self.dispatcher.audit.record_move(
                f"slack:{user}", role.label, channel, f"[shortcut] {words}", outcome
            )

    async def _tell(self, user: str, channel: str, text: str) -> None:
        """One line to `user` alone, in the channel the shortcut was used in; logged when
        Slack will not (the bot is not in that channel), never raised."""
        try:
            await self.client.chat_postEphemeral(channel=channel, user=user, text=text)
        except SlackApiError as err:
            log.info("could not tell %s in %s: %s", user, channel, err.response.get("error"))

    # -- Declare queue incident ------------------------------------------------------------

    async def on_declare(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        user = body["user"]["id"]
        role = await self.roles.role_of(user)
        if role < Role.OPERATOR:
            await self._audit(user, role, "", "declare queue incident", "refused")
            await respond(
                text=NEEDS_OPERATOR.format(doing="declaring an incident"),
                response_type="ephemeral",
            )
            return
        source = source_of(body, None)
        source = replace(source, permalink=await self._permalink(source.channel, source.ts))
        view = View(
            type="modal",
            callback_id=DECLARE_MODAL,
            title="Declare queue incident",
            submit="Declare",
            close="Cancel",
            private_metadata=metadata_of(source),
            blocks=[
                InputBlock(
                    block_id="title",
                    label="What is wrong",
                    element=PlainTextInputElement(
                        action_id="value",
                        initial_value=first_line(source.text) or None,
                        max_length=150,
                    ),
                ),
                InputBlock(
                    block_id="queue",
                    label="Queue (optional)",
                    optional=True,
                    element=PlainTextInputElement(action_id="value", max_length=200),
                ),
                InputBlock(
                    block_id="severity",
                    label="Severity",
                    element=StaticSelectElement(
                        action_id="value",
                        options=[Option(value=s, text=s) for s in SEVERITY_CHOICES],
                        initial_option=Option(value="sev2", text="sev2"),
                    ),
                ),
            ],
        )
        await self._open_dialog(body, view, respond)

    async def _open_dialog(self, body: dict[str, Any], view: View, respond: Any) -> None:
        """Open the dialog, or say in one line why Slack would not (a trigger id lives 3
        seconds: a slow moment, or a payload without one)."""
        trigger = body.get("trigger_id")
        error = "no trigger_id in the request"
        if trigger:
            try:
                await self.client.views_open(trigger_id=str(trigger), view=view)
                return
            except SlackApiError as err:
                error = str(err.response.get("error", "unknown error"))
        await respond(
            text=f"Slack did not open the dialog ({error}); use the shortcut again",
            response_type="ephemeral",
        )

    async def on_declare_submit(self, ack: Any, body: dict[str, Any]) -> None:
        """Checked before the dialog closes (a bad title or an unknown queue is said on
        its field), then declared; the answer is one line to the declarer."""
        user = body["user"]["id"]
        values = body["view"]["state"]["values"]
        severity = ((values.get("severity") or {}).get("value") or {}).get("selected_option")
        fields = {
            "title": ((values.get("title") or {}).get("value") or {}).get("value") or "",
            "queue": ((values.get("queue") or {}).get("value") or {}).get("value") or None,
            "severity": (severity or {}).get("value") or "sev2",
        }
        role = await self.roles.role_of(user)
        if role < Role.OPERATOR:
            text = NEEDS_OPERATOR.format(doing="declaring an incident")
            await ack(response_action="errors", errors={"title": text})
            return
        try:
            req = DeclareRequest.model_validate(fields)
        except ValidationError as err:
            first = err.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "title"
            where = field if field in ("title", "queue", "severity") else "title"
            await ack(response_action="errors", errors={where: first["msg"][:150]})
            return
        queue = None
        if req.queue:
            try:
                queue = (await self.dispatcher.service.require_queue(req.queue)).name
            except QueueOpsError as err:
                await ack(response_action="errors", errors={"queue": str(err)[:150]})
                return
        await ack()
        source, _ = source_from_metadata(body["view"].get("private_metadata") or "")
        words = f'incident declare "{req.title}"' + (f" --queue {queue}" if queue else "")
        async with self.dispatcher.tracking():
            try:
                declared = await self.desk.declare_from_message(
                    req.title, queue, req.severity, f"slack:{user}", source
                )
            except QueueOpsError as err:
                await self._audit(user, role, source.channel, words, "failed")
                await self._tell(user, source.channel, f"could not declare: {err}")
                return
        await self._audit(user, role, source.channel, words, "ok")
        name = declared.channel_name or declared.channel
        said = (
            "declared already" if declared.already else f"declared a {declared.severity} incident"
        )
        await self._tell(user, source.channel, f"{said}: <#{declared.channel}> ({name})")

    # -- Add to incident timeline ----------------------------------------------------------

    async def on_add_to_timeline(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        user = body["user"]["id"]
        role = await self.roles.role_of(user)
        channel = str((body.get("channel") or {}).get("id", ""))
        if role < Role.OPERATOR:
            await self._audit(user, role, channel, "add to incident timeline", "refused")
            await respond(
                text=NEEDS_OPERATOR.format(doing="adding to an incident's timeline"),
                response_type="ephemeral",
            )
            return
        source = source_of(body, None)
        source = replace(source, permalink=await self._permalink(source.channel, source.ts))
        here = await self.incidents.incident_of_channel(channel) if channel else None
        if here is not None and await self.incidents.exists(here):
            await self._add(here, source, user, role)
            await respond(text="added to this incident's timeline", response_type="ephemeral")
            return
        choices = await self._open_incidents()
        if not choices:
            await respond(
                text="there is no open incident to add this to (`/queue incident declare`)",
                response_type="ephemeral",
            )
            return
        view = View(
            type="modal",
            callback_id=TIMELINE_MODAL,
            title="Add to incident timeline",
            submit="Add",
            close="Cancel",
            private_metadata=metadata_of(source),
            blocks=[
                InputBlock(
                    block_id="incident",
                    label="Incident",
                    element=StaticSelectElement(
                        action_id="value",
                        options=[Option(value=iid, text=label[:75]) for iid, label in choices],
                    ),
                )
            ],
        )
        await self._open_dialog(body, view, respond)

    async def _open_incidents(self) -> list[tuple[str, str]]:
        """(id, "[sev] title") of open incidents, newest first, at most PICKABLE."""
        found, _ = await open_incidents(self.incidents)
        return [
            (i["id"], f"[{i.get('severity') or 'sev2'}] {i['title']}") for i in found[:PICKABLE]
        ]

    async def _add(self, iid: str, source: SourceMessage, user: str, role: Role) -> None:
        """Into the timeline at the message's own time; once the postmortem is posted
        (postmortems are written after the resolve) its message is edited to show it.
        Not keyed on the resolved status: the resolve posts the postmortem first and marks
        the incident resolved after, and a message added between the two counts too."""
        await self.incidents.add_to_timeline(
            iid, timeline_text(source, f"slack:{user}"), ts_ms(source.ts)
        )
        await self._audit(user, role, source.channel, f"add to incident timeline {iid}", "ok")
        await self.incidents.refresh_postmortem(iid)  # nothing when not posted yet

    async def on_timeline_submit(self, ack: Any, body: dict[str, Any]) -> None:
        user = body["user"]["id"]
        values = body["view"]["state"]["values"]
        picked = ((values.get("incident") or {}).get("value") or {}).get("selected_option") or {}
        iid = str(picked.get("value") or "")
        role = await self.roles.role_of(user)
        if role < Role.OPERATOR:
            text = NEEDS_OPERATOR.format(doing="adding to an incident's timeline")
            await ack(response_action="errors", errors={"incident": text})
            return
        if not iid or not await self.incidents.exists(iid):
            await ack(response_action="errors", errors={"incident": "that incident is gone"})
            return
        await ack()
        source, _ = source_from_metadata(body["view"].get("private_metadata") or "")
        await self._add(iid, source, user, role)
        incident = await self.incidents.load(iid)
        if incident.get("channel_id"):
            link = f"<{source.permalink}|a message>" if source.permalink else "a message"
            where = f" from <#{source.channel}>" if source.channel else ""
            await self.client.chat_postMessage(
                channel=str(incident["channel_id"]),
                text=f"<@{user}> added {link}{where} to the timeline",
            )
