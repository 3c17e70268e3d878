"""The buttons of an incident's status message, and its Quarantine… dialog.

Each button runs an ordinary command through the Dispatcher as the person who pressed it
(roles, rate limit, audit and the incident timeline apply as for /queue), and posts the
reply in the incident channel.

The watcher's incidents also have `Acknowledge` (who took it, on the status message) and
`Snooze 1h` (the watcher says nothing more about that rule on that queue for an hour): not
commands, but records on the incident (its hash, which the status message reads) and, for
the snooze, the watcher's own key (bot/alerts/watcher.py: `snooze`).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import time
from collections.abc import Sequence
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.models.blocks import InputBlock, PlainTextInputElement
from slack_sdk.models.views import View
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.watcher import SNOOZE_MS, snooze
from bot.dispatch import Dispatcher
from bot.errors import QueueOpsError
from bot.incidents.channels import Busy, Incidents, waiting_out_busy
from bot.incidents.desk import SlackIncidentDesk
from bot.incidents.messages import TAKE_LEAD, utc, watcher_group_of
from bot.incidents.reminders import REMIND_SNOOZE, snooze_reminder
from bot.incidents.reminders import SNOOZE_MS as REMIND_SNOOZE_MS
from bot.roles import Role
from bot.slack.blocks import RUN_COMMAND, as_dicts, fallback_text, render_blocks
from bot.slack.roles import RoleResolver
from commands.incident_desk import IncidentDesk
from commands.reply import ErrorReply

log = logging.getLogger(__name__)

RESOLVE_BLOCKED: dict[type[Exception], str] = {Busy: "another replica or press holds it"}


class IncidentActions:
    def __init__(
        self,
        dispatcher: Dispatcher,
        incidents: Incidents,
        roles: RoleResolver,
        client: AsyncWebClient,
    ) -> None:
        self.dispatcher = dispatcher
        self.incidents = incidents
        self.roles = roles
        self.client = client

    def register(self, app: AsyncApp) -> None:
        app.action("incident_snapshot")(self.on_snapshot)
        app.action("incident_pause")(self.on_pause)
        app.action("incident_drain")(self.on_drain)
        app.action("incident_resolve")(self.on_resolve)
        app.action("incident_quarantine")(self.on_quarantine)
        app.action("incident_checklist")(self.on_checklist)
        app.action("incident_ack")(self.on_ack)
        app.action("incident_snooze")(self.on_snooze)
        app.action(TAKE_LEAD)(self.on_take_lead)
        app.action(REMIND_SNOOZE)(self.on_remind_snooze)
        app.action(re.compile(rf"^{RUN_COMMAND}:\d+$"))(self.on_run_command)
        app.view("incident_quarantine_modal")(self.on_quarantine_submit)

    @staticmethod
    def _value(body: dict[str, Any]) -> tuple[str, str, str, str]:
        """(incident id, queue, user, channel) of a button press."""
        iid, _, queue = str(body["actions"][0].get("value", "")).partition("|")
        return iid, queue, body["user"]["id"], (body.get("channel") or {}).get("id", "")

    async def _run_in_channel(self, words: Sequence[str], user: str, channel: str) -> None:
        async with self.dispatcher.tracking():
            role = await self.roles.role_of(user)
            outcome = await self.dispatcher.run(
                list(words),
                actor=f"slack:{user}",
                role=role,
                transport="slack",
                channel=channel,
                confirmed=True,
            )
            view = outcome.reply.view()
            if isinstance(outcome.reply, ErrorReply):
                await self.client.chat_postEphemeral(
                    channel=channel,
                    user=user,
                    text=fallback_text(view),
                    blocks=as_dicts(render_blocks(view)),
                )
                return
            await self.client.chat_postMessage(
                channel=channel,
                text=f"<@{user}>: {' '.join(words)} · {fallback_text(view)}",
                blocks=as_dicts(render_blocks(view)),
            )

    async def on_run_command(self, ack: Any, body: dict[str, Any]) -> None:
        """A `Buttons` press (an incident's "quarantine this cluster"): its command line,
        run as the person who pressed, with their role; the words are parsed as typed ones
        are, so a value that is not a command is one line back to them."""
        await ack()
        value = str(body["actions"][0].get("value", ""))[:2000]
        try:
            words = shlex.split(value)
        except ValueError:
            words = []
        user, channel = body["user"]["id"], (body.get("channel") or {}).get("id", "")
        if words:
            await self._run_in_channel(words, user, channel)

    async def _operator(self, user: str, channel: str, doing: str) -> bool:
        """Whether `user` may press an operator's button; if not, they are told privately,
        in one line naming what they tried, and nothing happens."""
        if await self.roles.role_of(user) >= Role.OPERATOR:
            return True
        await self.client.chat_postEphemeral(
            channel=channel, user=user, text=f"{doing} needs the operator role (QUEUEOPS_ROLES)"
        )
        return False

    async def on_snapshot(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        _, queue, user, channel = self._value(body)
        await self._run_in_channel(["snapshot", *([queue] if queue else [])], user, channel)

    async def on_pause(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        _, queue, user, channel = self._value(body)
        await self._run_in_channel(["pause", queue], user, channel)

    async def on_drain(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        _, queue, user, channel = self._value(body)
        await self._run_in_channel(["drain", *([queue] if queue else [])], user, channel)

    async def on_resolve(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        iid, _, user, channel = self._value(body)
        if not await self._operator(user, channel, "resolving an incident"):
            return
        async with self.dispatcher.tracking():
            try:  # a notification or another resolve at it: wait for it, then resolve
                await waiting_out_busy(lambda: self.incidents.resolve(iid, by=f"slack:{user}"))
            except Exception as err:  # Slack or Redis down: said to the presser, not lost
                log.warning("incident %s: resolving failed: %s", iid, err)
                why = RESOLVE_BLOCKED.get(type(err), type(err).__name__)
                await self.client.chat_postEphemeral(
                    channel=channel,
                    user=user,
                    text=f"resolving did not finish ({why}): what was done is kept; "
                    "press Resolve again",
                )

    async def _watcher_incident(
        self, iid: str, user: str, channel: str, doing: str
    ) -> tuple[dict[str, Any], str] | None:
        """The open watcher incident a button names, and its group, for an operator; else
        one line back to the presser, privately, and None."""
        refusal = None
        incident: dict[str, Any] = {}
        group = None
        if await self.roles.role_of(user) < Role.OPERATOR:
            refusal = f"{doing} an incident needs the operator role (QUEUEOPS_ROLES)"
        elif not iid or not await self.incidents.exists(iid):
            refusal = "that incident is gone"
        else:
            incident = await self.incidents.load(iid)
            group = watcher_group_of(incident)
            if group is None:
                refusal = "only the watcher's incidents have this button"
            elif incident.get("status") == "resolved":
                refusal = "that incident is resolved already"
        if refusal is not None or group is None:
            await self.client.chat_postEphemeral(channel=channel, user=user, text=refusal or "")
            return None
        return incident, group

    async def on_ack(self, ack: Any, body: dict[str, Any]) -> None:
        """Acknowledge: who and when, on the status message; one line in the channel."""
        await ack()
        iid, _, user, channel = self._value(body)
        found = await self._watcher_incident(iid, user, channel, "acknowledging")
        if found is None:
            return
        now = int(time.time() * 1000)
        await self.incidents.record(iid, {"acked_by": user, "acked_at": now})
        await self.incidents.add_to_timeline(iid, f"slack:{user} acknowledged", now)
        await self.client.chat_postMessage(
            channel=channel, text=f"<@{user}> acknowledged this incident"
        )
        await self.incidents.refresh_status(iid, force=True)

    async def on_snooze(self, ack: Any, body: dict[str, Any]) -> None:
        """Snooze 1h: the watcher emits nothing for this rule on this queue until then (it
        resolves or fires afterwards as things are then); said on the status message and in
        one line."""
        await ack()
        iid, _, user, channel = self._value(body)
        found = await self._watcher_incident(iid, user, channel, "snoozing")
        if found is None:
            return
        _, group = found
        until = int(time.time() * 1000) + SNOOZE_MS
        await snooze(self.incidents.redis, self.incidents.state_prefix, group, until)
        await self.incidents.record(iid, {"snoozed_until": until})
        rule, _, queue = group.removeprefix("watcher:").partition(":")
        line = f"snoozed the watcher's {rule} rule on {queue} until {utc(until)}"
        await self.incidents.add_to_timeline(iid, f"slack:{user} {line}")
        await self.client.chat_postMessage(channel=channel, text=f"<@{user}> {line}")
        await self.incidents.refresh_status(iid, force=True)

    async def on_remind_snooze(self, ack: Any, body: dict[str, Any]) -> None:
        """Snooze on an update reminder: no reminder for 30 minutes (bot/incidents/
        reminders.py); an operator's move, said in one line and in the timeline."""
        await ack()
        iid, _, user, channel = self._value(body)
        if not await self._operator(user, channel, "snoozing the update reminder"):
            return
        incident = await self.incidents.load(iid) if await self.incidents.exists(iid) else None
        if incident is None or incident.get("status") == "resolved":
            await self.client.chat_postEphemeral(
                channel=channel, user=user, text="this incident is resolved or gone"
            )
            return
        until = int(time.time() * 1000) + REMIND_SNOOZE_MS
        await snooze_reminder(self.incidents, iid, until)
        line = f"snoozed the update reminder until {utc(until)}"
        await self.incidents.add_to_timeline(iid, f"slack:{user} {line}")
        await self.client.chat_postMessage(channel=channel, text=f"<@{user}> {line}")

    async def on_take_lead(self, ack: Any, body: dict[str, Any]) -> None:
        """Take the lead (the status message, and the question put to whoever declared):
        the presser leads, as `incident lead @them` would make them; an operator's move,
        a viewer is told privately, as for the other buttons."""
        await ack()
        iid, _, user, channel = self._value(body)
        if not await self._operator(user, channel, "leading an incident"):
            return
        desk: IncidentDesk = self.dispatcher.incidents or SlackIncidentDesk(
            self.incidents, self.client
        )
        async with self.dispatcher.tracking():
            try:
                change = await desk.set_lead(iid, user, by=f"slack:{user}", note=None)
            except QueueOpsError as err:  # resolved, gone: one line back to the presser
                await self.client.chat_postEphemeral(channel=channel, user=user, text=str(err))
                return
        if not change.changed:
            await self.client.chat_postEphemeral(
                channel=channel, user=user, text="you lead this incident already"
            )

    async def on_checklist(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        action = body["actions"][0]
        iid = await self.incidents.incident_of_channel((body.get("channel") or {}).get("id", ""))
        if iid:
            done = len(action.get("selected_options") or [])
            await self.incidents.add_to_timeline(
                iid, f"slack:{body['user']['id']} ticked the triage checklist ({done}/7 done)"
            )

    async def on_quarantine(self, ack: Any, body: dict[str, Any]) -> None:
        await ack()
        _, queue, _, channel = self._value(body)
        view = View(
            type="modal",
            callback_id="incident_quarantine_modal",
            title=f"Quarantine from {queue}"[:24],
            submit="Quarantine",
            close="Cancel",
            private_metadata=json.dumps({"queue": queue, "channel": channel}),
            blocks=[
                InputBlock(
                    block_id="job", label="Job id", element=PlainTextInputElement(action_id="value")
                ),
                InputBlock(
                    block_id="reason",
                    label="Why (it stays with the job)",
                    element=PlainTextInputElement(action_id="value", multiline=True),
                ),
            ],
        )
        await self.client.views_open(trigger_id=body["trigger_id"], view=view)

    async def on_quarantine_submit(self, ack: Any, body: dict[str, Any]) -> None:
        values = body["view"]["state"]["values"]
        job = (values["job"]["value"].get("value") or "").strip()
        reason = (values["reason"]["value"].get("value") or "").strip()
        if not job or any(c.isspace() for c in job):
            await ack(response_action="errors", errors={"job": "one job id, no spaces"})
            return
        await ack()
        meta = json.loads(body["view"].get("private_metadata") or "{}")
        await self._run_in_channel(
            ["quarantine", meta.get("queue", ""), job, "--reason", reason or "from incident"],
            body["user"]["id"],
            meta.get("channel", ""),
        )
