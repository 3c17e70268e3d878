"""SlackIncidentDesk: the `incident` commands' moves (commands/incident_desk.py) on top of
the incident channels alerts open (bot/incidents/channels.py).

A declared incident is an alert like any other: an AlertEvent with source "declared" and a
group of its own goes through `Incidents.handle`, so its channel name, status message,
checklist, buttons, invitations and page are exactly an alert's, with the same
record-each-step crash safety.

Lead, severity and updates are fields on the incident's hash (`Incidents.record`), which the
pinned status message and the channel topic (`Incidents.refresh_topic`) read when they are
re-rendered; each change is also a line in the channel and in the timeline. The
stakeholders' copy (INCIDENT_UPDATES_CHANNEL) is one message per incident: posted once, its
ts kept on the hash (`mirror_ts`), edited in place after, so that channel reads as one line
per incident rather than a stream.

Crash safety: each change is recorded before it is announced, and repeating a change that
is already recorded (the same lead, the same severity) announces nothing again. The one
window left is the mirror's first post: a crash between chat.postMessage and recording its
ts posts a second mirror message on the next update (Slack gives no idempotency key).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import ActionsBlock, ButtonElement, MarkdownTextObject, SectionBlock
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.models import AlertEvent
from bot.errors import NotFound, OperationFailed, Refused
from bot.incidents.channels import (
    Busy,
    ExistingChannel,
    Incidents,
    now_ms,
    waiting_out_busy,
)
from bot.incidents.messages import TAKE_LEAD
from bot.incidents.paging import PD_SEVERITY
from bot.slack.blocks import as_dicts, escape
from commands.incident_desk import (
    DeclaredIncident,
    FollowupAdded,
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


@dataclass(frozen=True)
class SourceMessage:
    """The message the "Declare queue incident" shortcut was used on."""

    channel: str
    ts: str
    text: str
    author: str | None = None
    permalink: str | None = None


QUOTE_CHARS = 500


def quoted(source: SourceMessage) -> str:
    """The message, linked and quoted (its first QUOTE_CHARS, escaped: a quoted
    `<!channel>` must not ping the new channel)."""
    by = f" by <@{source.author}>" if source.author else ""
    what = f"<{source.permalink}|a message>" if source.permalink else "a message"
    text = source.text if len(source.text) <= QUOTE_CHARS else source.text[:QUOTE_CHARS] + "…"
    lines = escape(text).splitlines() or [""]
    return f"From {what}{by} in <#{source.channel}>:\n" + "\n".join(f"> {ln}" for ln in lines)


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
        self,
        title: str,
        queue: str | None,
        severity: Severity,
        actor: str,
        *,
        group_key: str,
        source: SourceMessage | None = None,
        channel: ExistingChannel | None = None,
    ) -> DeclaredIncident:
        """Handled as an alert is. The severity rides as the `severity` label in the words
        alerts use (`critical` is sev1...), so `open` sets the incident's severity, and
        pages, exactly as for an alert.

        The group says what "the same declaration" is, so that running it again after
        Slack failed half-way resumes it instead of opening a second channel. By
        `/queue incident declare` it is the declarer and the title (the same person
        declaring the same thing again is a retry or a double-typed command; two people
        declaring the same title get two incidents); from a message it is the message (the
        shortcut submitted twice, or by two people, is one incident); converting, it is the
        channel. The same group while its incident is open answers with that incident
        (`already`); once resolved, the same words open a new one."""
        labels = {"severity": PD_SEVERITY[severity]}
        if queue:
            labels["queue"] = queue
        event = AlertEvent(
            source="declared",
            group_key=group_key,
            status="firing",
            title=title,
            summary=f"declared by {actor}"
            + (f" from a message in <#{source.channel}>" if source else ""),
            queues=[queue] if queue else [],
            labels=labels,
            link=source.permalink if source else None,
            starts_at=datetime.now(tz=UTC),
        )
        current = await self._open_of_group(event.group_id)
        if current is not None:
            return current
        iid = await self._handle(event, channel)
        incident = await self.incidents.load(iid)
        where = str(incident["channel_id"])
        # Once per incident, also when a retry after a crash comes here again.
        first = await self.incidents.redis.hsetnx(
            f"{self.incidents.state_prefix}:incident:{iid}", "declared_by", actor
        )
        if first:
            how = "converted this channel into an incident" if channel else "declared this incident"
            await self.incidents.add_to_timeline(
                iid,
                f"{'converted' if channel else 'declared'} by {actor} ({severity})"
                + (f" from a message: {source.text[:300]}" if source else ""),
            )
            if channel is None:
                await self._invite_declarer(where, actor)
            await self.client.chat_postMessage(
                channel=where,
                text=f"{person(actor)} {how}. Who leads it?",
                blocks=as_dicts(
                    [
                        SectionBlock(
                            text=MarkdownTextObject(
                                text=f"{person(actor)} {how} ({severity}). Will you lead it? "
                                "(`/queue incident lead @someone` hands it to someone else)"
                                + (f"\n{quoted(source)}" if source else "")
                            )
                        ),
                        ActionsBlock(block_id="incident_lead", elements=[take_lead_button(iid)]),
                    ]
                ),
            )
        return DeclaredIncident(
            incident_id=iid,
            channel=where,
            channel_name=str(incident.get("channel_name", "")),
            severity=severity,
            already=not first,
        )

    async def _handle(self, event: AlertEvent, channel: ExistingChannel | None) -> str:
        """Handle the declaration as an alert; when another replica (or a second press of
        the same dialog) holds the incident's lock, wait for it: both then answer with the
        one incident, and nobody hears "internal error"."""
        try:
            iid, _ = await waiting_out_busy(lambda: self.incidents.handle(event, channel=channel))
        except Busy:
            raise OperationFailed(
                "another replica is opening this incident; run it again shortly"
            ) from None
        return iid

    async def _still_open(self, iid: str | None) -> tuple[dict[str, Any], DeclaredIncident] | None:
        """The incident `iid` while it is open, and what a declaration answers with it
        (`already`); None when there is none or it is resolved."""
        if not iid or not await self.incidents.exists(iid):
            return None
        incident = await self.incidents.load(iid)
        if incident.get("status") == "resolved":
            return None
        return incident, DeclaredIncident(
            incident_id=iid,
            channel=str(incident.get("channel_id", "")),
            channel_name=str(incident.get("channel_name", "")),
            severity=incident.get("severity") or "sev2",
            already=True,
        )

    async def _open_of_group(self, gid: str) -> DeclaredIncident | None:
        """The group's open incident once its declaration is complete (its channel made
        and the declarer asked to lead), as `already`; None to (re)declare."""
        iid = await self.incidents.redis.get(f"{self.incidents.state_prefix}:group:{gid}")
        found = await self._still_open(str(iid) if iid else None)
        return found[1] if found is not None and found[0].get("declared_by") else None

    async def _invite_declarer(self, channel: str, actor: str) -> None:
        """Whoever declared is in the new channel at once (they will be asked to lead)."""
        found = _SLACK_ACTOR.match(actor)
        if found is None:
            return
        try:
            await self.client.conversations_invite(channel=channel, users=found.group(1))
        except SlackApiError as err:
            if err.response.get("error") not in ("already_in_channel", "cant_invite_self"):
                raise

    async def _convert(
        self, channel: str, title: str | None, queue: str | None, severity: Severity, actor: str
    ) -> DeclaredIncident:
        """The channel people are in becomes the incident's: the bot joins a public one
        (a private one must have invited it), and the channel's incident is the group
        `converted:<channel>`, so converting twice is one incident."""
        if not channel or channel[0] not in "CG":
            raise Refused("run this in a channel: a direct message cannot be an incident channel")
        gid = AlertEvent.group_id_of(f"converted:{channel}")
        current = await self._open_of_group(gid)
        if current is not None:
            return current
        # The channel runs an incident already (an alert's, a declared one): that one. Not
        # this very conversion left half-done by a failure (its incident ids start with the
        # group's): converting again resumes it.
        here = await self._still_open(await self.incidents.incident_of_channel(channel))
        if here is not None and not str(here[0]["id"]).startswith(f"{gid}-"):
            return here[1]
        try:
            info = (await self.client.conversations_info(channel=channel)).get("channel") or {}
            if not info.get("is_member", True):
                await self.client.conversations_join(channel=channel)
        except SlackApiError as err:
            if err.response.get("error") in (
                "channel_not_found",
                "method_not_supported_for_channel_type",
                "not_in_channel",
                "is_archived",
            ):
                raise Refused(
                    "queueops cannot run this channel: invite it first (/invite @queueops); "
                    f"Slack said {err.response.get('error')}"
                ) from None
            raise
        name = str(info.get("name") or channel)
        return await self._declare(
            title or f"#{name}",
            queue,
            severity,
            actor,
            group_key=f"converted:{channel}",
            channel=ExistingChannel(id=channel, name=name),
        )

    async def declare_from_message(
        self,
        title: str,
        queue: str | None,
        severity: Severity,
        actor: str,
        source: SourceMessage,
    ) -> DeclaredIncident:
        """The "Declare queue incident" shortcut: the message is linked and quoted in the
        new channel, and declaring from it again is the same incident."""
        async with slack_says("opening the incident channel"):
            return await self._declare(
                title,
                queue,
                severity,
                actor,
                group_key=f"declared:message:{source.channel}:{source.ts}",
                source=source,
            )

    async def incident_of_channel(self, channel: str) -> str | None:
        return await self.incidents.incident_of_channel(channel)

    # -- the desk's moves: each a Slack refusal in one line (slack_says) -------------------

    async def declare(
        self, title: str, queue: str | None, severity: Severity, actor: str
    ) -> DeclaredIncident:
        same = " ".join(title.lower().split())
        async with slack_says("opening the incident channel"):
            return await self._declare(
                title, queue, severity, actor, group_key=f"declared:{actor}:{same}"
            )

    async def convert(
        self, channel: str, title: str | None, queue: str | None, severity: Severity, actor: str
    ) -> DeclaredIncident:
        async with slack_says("making this channel the incident's"):
            return await self._convert(channel, title, queue, severity, actor)

    async def set_lead(self, iid: str, user: str, *, by: str, note: str | None) -> LeadChange:
        async with slack_says("the lead change"):
            return await self._set_lead(iid, user, by=by, note=note)

    async def set_severity(self, iid: str, severity: Severity, *, by: str) -> SeverityChange:
        async with slack_says("the severity change"):
            return await self._set_severity(iid, severity, by=by)

    async def post_update(self, iid: str, text: str, *, by: str) -> UpdatePosted:
        async with slack_says("the update"):
            return await self._post_update(iid, text, by=by)

    async def add_followup(self, iid: str, text: str, *, by: str) -> FollowupAdded:
        async with slack_says("the follow-up"):
            return await self._add_followup(iid, text, by=by)

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
        await self.incidents.refresh_topic(iid)
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
        await self.incidents.refresh_topic(iid)
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
        await self.incidents.refresh_topic(iid)
        mirrored = await self._mirror(iid)
        return UpdatePosted(incident_id=iid, mirrored=mirrored)

    # -- follow-ups --------------------------------------------------------------------------

    async def _add_followup(self, iid: str, text: str, *, by: str) -> FollowupAdded:
        """A follow-up for the postmortem: kept (bounded: PostmortemState.add_followup),
        entered in the timeline, said in the channel in one line. Open or resolved alike:
        postmortems are written after the resolve.

        Once the postmortem message is posted it is edited in place to list it. The
        Markdown file attached at the resolve is not uploaded again: Slack cannot replace a
        file's content, so each follow-up would add one more near-identical file to the
        channel and leave people asking which is current; the file is the postmortem as
        of the resolve, and the message (which says so) is the live list."""
        if not await self.incidents.exists(iid):
            raise NotFound(f"incident {iid} does not exist")
        incident = await self.incidents.load(iid)
        if not incident.get("channel_id"):
            raise Refused("this incident's channel is still being opened; try again shortly")
        at = now_ms()
        number = await self.incidents.postmortems.add_followup(iid, text, by=by, at_ms=at)
        await self.incidents.add_to_timeline(iid, f"follow-up by {by}: {text}", at)
        await self.client.chat_postMessage(
            channel=incident["channel_id"],
            text=f":pushpin: Follow-up {number} from {person(by)}: {escape(text)}",
        )
        updated = await self.incidents.refresh_postmortem(iid)
        return FollowupAdded(
            incident_id=iid,
            number=number,
            resolved=incident.get("status") == "resolved",
            postmortem_updated=updated,
        )

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
