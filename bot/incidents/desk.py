"""SlackIncidentDesk: the `incident` commands' moves (commands/incident_desk.py) on top of
the incident channels alerts open (bot/incidents/channels.py).

A declared incident is an alert like any other: an AlertEvent with source "declared" and a
group of its own goes through `Incidents.handle`, so its channel name, status message,
checklist, buttons, invitations and page are exactly an alert's, with the same
record-each-step crash safety.

Lead, severity and updates are fields on the incident's hash (`Incidents.record`), which the
pinned status message reads when it is re-rendered; each change is also a line in the
channel and in the timeline. The stakeholders' copy (INCIDENT_UPDATES_CHANNEL) is one
message per incident: posted once, its ts kept on the hash (`mirror_ts`), edited in place
after, so that channel reads as one line per incident rather than a stream.

Crash safety: each change is recorded before it is announced, and repeating a change that
is already recorded (the same lead, the same severity) announces nothing again. The one
window left is the mirror's first post: a crash between chat.postMessage and recording its
ts posts a second mirror message on the next update (Slack gives no idempotency key).
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import ActionsBlock, ButtonElement, MarkdownTextObject, SectionBlock
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.models import AlertEvent
from bot.errors import NotFound, OperationFailed, Refused
from bot.incidents.channels import Busy, Incidents, now_ms
from bot.incidents.messages import TAKE_LEAD
from bot.incidents.paging import PD_SEVERITY
from bot.slack.blocks import as_dicts, escape
from commands.incident_desk import (
    DeclaredIncident,
    LeadChange,
    Severity,
    SeverityChange,
    UpdatePosted,
)

_SLACK_ACTOR = re.compile(r"^slack:([UW][A-Z0-9]+)$")


def person(actor: str) -> str:
    """An actor ("slack:U123", "cli:alice") as Slack shows a person: a mention when it is a
    Slack user, the escaped name otherwise."""
    found = _SLACK_ACTOR.match(actor)
    return f"<@{found.group(1)}>" if found else escape(actor)


@contextlib.asynccontextmanager
async def slack_says(doing: str) -> AsyncIterator[None]:
    """A Slack refusal (missing scope, archived channel) as the command's one line, not an
    internal error: what was recorded before it stays, and running the command again
    resumes (for a declaration, the next attempt opens a new incident)."""
    try:
        yield
    except SlackApiError as err:
        raise OperationFailed(
            f"Slack refused {doing}: {err.response.get('error', 'unknown error')}"
        ) from None


def take_lead_button(iid: str) -> ButtonElement:
    return ButtonElement(
        text="Take the lead", action_id=TAKE_LEAD, value=f"{iid}|", style="primary"
    )


class SlackIncidentDesk:
    """IncidentDesk (commands/incident_desk.py) for Slack."""

    def __init__(
        self,
        incidents: Incidents,
        client: AsyncWebClient,
        *,
        updates_channel: str | None = None,
    ) -> None:
        self.incidents = incidents
        self.client = client
        self.updates_channel = updates_channel

    # -- declare ---------------------------------------------------------------------------

    async def _declare(
        self, title: str, queue: str | None, severity: Severity, actor: str
    ) -> DeclaredIncident:
        """A fresh group per declaration (two people declaring the same title get two
        incidents: a person means a new one), handled as an alert is. The severity rides
        as the `severity` label in the words alerts use (`critical` is sev1...), so
        `open` sets the incident's severity, and pages, exactly as for an alert."""
        labels = {"severity": PD_SEVERITY[severity]}
        if queue:
            labels["queue"] = queue
        event = AlertEvent(
            source="declared",
            group_key=f"declared:{secrets.token_hex(10)}",
            status="firing",
            title=title,
            summary=f"declared by {actor}",
            queues=[queue] if queue else [],
            labels=labels,
            starts_at=datetime.now(tz=UTC),
        )
        await self.incidents.handle(event)
        # The group's current incident, as claim_incident.lua keeps it.
        iid = str(
            await self.incidents.redis.get(f"{self.incidents.state_prefix}:group:{event.group_id}")
        )
        incident = await self.incidents.load(iid)
        channel = str(incident["channel_id"])
        await self.incidents.add_to_timeline(iid, f"declared by {actor} ({severity})")
        await self.client.chat_postMessage(
            channel=channel,
            text=f"{person(actor)} declared this incident. Who leads it?",
            blocks=as_dicts(
                [
                    SectionBlock(
                        text=MarkdownTextObject(
                            text=f"{person(actor)} declared this incident ({severity}). "
                            "Will you lead it? (`/queue incident lead @someone` hands it "
                            "to someone else)"
                        )
                    ),
                    ActionsBlock(block_id="incident_lead", elements=[take_lead_button(iid)]),
                ]
            ),
        )
        return DeclaredIncident(
            incident_id=iid,
            channel=channel,
            channel_name=str(incident.get("channel_name", "")),
            severity=severity,
        )

    async def incident_of_channel(self, channel: str) -> str | None:
        return await self.incidents.incident_of_channel(channel)

    # -- the desk's moves: each a Slack refusal in one line (slack_says) -------------------

    async def declare(
        self, title: str, queue: str | None, severity: Severity, actor: str
    ) -> DeclaredIncident:
        async with slack_says("opening the incident channel"):
            return await self._declare(title, queue, severity, actor)

    async def set_lead(self, iid: str, user: str, *, by: str, note: str | None) -> LeadChange:
        async with slack_says("the lead change"):
            return await self._set_lead(iid, user, by=by, note=note)

    async def set_severity(self, iid: str, severity: Severity, *, by: str) -> SeverityChange:
        async with slack_says("the severity change"):
            return await self._set_severity(iid, severity, by=by)

    async def post_update(self, iid: str, text: str, *, by: str) -> UpdatePosted:
        async with slack_says("the update"):
            return await self._post_update(iid, text, by=by)

    # -- lead, severity, update ------------------------------------------------------------

    async def _open_incident(self, iid: str) -> dict[str, Any]:
        if not await self.incidents.exists(iid):
            raise NotFound(f"incident {iid} does not exist")
        incident = await self.incidents.load(iid)
        if incident.get("status") == "resolved":
            raise Refused("this incident is resolved already")
        if not incident.get("channel_id"):
            raise Refused("this incident's channel is still being opened; try again shortly")
        return incident

    async def _set_lead(self, iid: str, user: str, *, by: str, note: str | None) -> LeadChange:
        """Record the lead, say it (a hand-over names both), acknowledge the page, and
        re-render the status message. The same lead again changes and says nothing."""
        incident = await self._open_incident(iid)
        previous = incident.get("lead") or None
        change = LeadChange(incident_id=iid, lead=user, previous=previous, note=note)
        if not change.changed:
            return change
        await self.incidents.record(iid, {"lead": user, "lead_at": now_ms(), "lead_by": by})
        said = f": {escape(note)}" if note else ""
        if previous:
            line = f"<@{previous}> handed over to <@{user}>{said}"
            timeline = f"{by}: lead handed over from {previous} to {user}"
        else:
            line = f"<@{user}> leads this incident{said}"
            timeline = f"{by}: {user} took the lead"
        await self.incidents.add_to_timeline(iid, timeline + (f": {note}" if note else ""))
        await self.client.chat_postMessage(channel=incident["channel_id"], text=line)
        await self.incidents.acknowledge(iid, by=user)  # the page, when there is one
        await self.incidents.refresh_status(iid, force=True)
        await self._mirror(iid)
        return change

    async def _set_severity(self, iid: str, severity: Severity, *, by: str) -> SeverityChange:
        """Record the severity, say it, and bring the page up to date: an incident raised
        to PAGE_SEVERITY pages now (`open` pages what is owed, under the incident's lock;
        a replica holding it pages it itself, so Busy is left to it)."""
        incident = await self._open_incident(iid)
        previous = str(incident.get("severity") or "sev3")
        change = SeverityChange(incident_id=iid, severity=severity, previous=previous)
        if previous == severity:
            return change
        await self.incidents.record(iid, {"severity": severity})
        await self.incidents.add_to_timeline(iid, f"{by}: severity {previous} → {severity}")
        await self.client.chat_postMessage(
            channel=incident["channel_id"],
            text=f"{person(by)} changed the severity from {previous} to *{severity}*",
        )
        with contextlib.suppress(Busy):
            await self.incidents.open(iid)
        await self.incidents.refresh_status(iid, force=True)
        await self._mirror(iid)
        return change

    async def _post_update(self, iid: str, text: str, *, by: str) -> UpdatePosted:
        """The update: recorded (it replaces the status message's update line), posted in
        the channel, entered in the timeline, and mirrored to the stakeholders."""
        incident = await self._open_incident(iid)
        at = now_ms()
        await self.incidents.record(iid, {"update": text, "updated_at": at, "updated_by": by})
        await self.incidents.add_to_timeline(iid, f"update by {by}: {text}", at)
        await self.client.chat_postMessage(
            channel=incident["channel_id"],
            text=f":mega: *Update* from {person(by)}: {escape(text)}",
        )
        await self.incidents.refresh_status(iid, force=True)
        mirrored = await self._mirror(iid)
        return UpdatePosted(incident_id=iid, mirrored=mirrored)

    # -- the stakeholders' channel ---------------------------------------------------------

    async def _mirror(self, iid: str) -> bool:
        """The incident's one message in INCIDENT_UPDATES_CHANNEL, posted at its first
        update and edited in place after (also on a lead or severity change once posted)."""
        if not self.updates_channel:
            return False
        incident = await self.incidents.load(iid)
        ts = incident.get("mirror_ts")
        if not ts and not incident.get("update"):
            return False  # nothing said to stakeholders yet: a lead change alone stays inside
        text = mirror_text(incident)
        if ts:
            await self.client.chat_update(channel=self.updates_channel, ts=str(ts), text=text)
            return True
        posted = await self.client.chat_postMessage(channel=self.updates_channel, text=text)
        await self.incidents.record(iid, {"mirror_ts": str(posted["ts"])})
        return True


def mirror_text(incident: dict[str, Any]) -> str:
    """One line per incident for stakeholders: what, how bad, who leads, the latest word."""
    severity = str(incident.get("severity") or "sev3")
    state = "resolved" if incident.get("status") == "resolved" else "open"
    where = f" in <#{incident['channel_id']}>" if incident.get("channel_id") else ""
    lead = f"<@{incident['lead']}>" if incident.get("lead") else "nobody yet"
    update = escape(str(incident.get("update") or ""))
    when = ""
    if incident.get("updated_at"):
        stamp = datetime.fromtimestamp(int(incident["updated_at"]) / 1000, tz=UTC)
        when = f" ({stamp:%H:%M} UTC, {person(str(incident.get('updated_by') or ''))})"
    return (
        f"*[{severity}] {escape(str(incident['title']))}*{where} · {state} · lead: {lead}\n"
        f"Latest update{when}: {update}"
    )
