"""`incident declare|lead|severity|update|followup`: run an incident from its channel.

Declaring opens a channel exactly as an alert does (bot/incidents/desk.py); the others act
on the incident of the channel they are typed in, so nobody has to copy an incident id
around mid-incident. They speak to the incident desk (commands/incident_desk.py), which
only `serve` with Slack has: in the CLI and the shell each says so in one line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, StringConstraints

from bot.errors import Refused
from bot.roles import Role
from commands.context import CommandContext
from commands.incident_desk import (
    DeclaredIncident,
    FollowupAdded,
    IncidentDesk,
    LeadChange,
    Severity,
    SeverityChange,
    UpdatePosted,
)
from commands.parsing import QueueName, Request, WordParser, parse_words
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Block, Mark, Note

SEVERITY_CHOICES = ("sev1", "sev2", "sev3")
DECLARE_USAGE = 'incident declare "TITLE" [--queue Q] [--severity sev1|sev2|sev3]'
CONVERT_USAGE = 'incident convert ["TITLE"] [--queue Q] [--severity sev1|sev2|sev3]'
LEAD_USAGE = "incident lead @USER [--note TEXT]"
SEVERITY_USAGE = "incident severity sev1|sev2|sev3"
UPDATE_USAGE = 'incident update "TEXT"'
NO_DESK = "incidents need Slack: queueops serve with SLACK_BOT_TOKEN"
NOT_HERE = "run this in an incident channel"
_USER = re.compile(r"^<@([UW][A-Z0-9]{2,})(?:\|[^>]*)?>$|^@?([UW][A-Z0-9]{2,})$")


def _user(value: str) -> str:
    """A Slack user as Slack sends a mention (`<@U123>`, `<@U123|ann>`) or its bare id."""
    found = _USER.match(value.strip())
    if found is None:
        raise ValueError(f"'{value[:40]}' is not a Slack user (mention them: @someone)")
    return found.group(1) or found.group(2)


SlackUser = Annotated[str, AfterValidator(_user)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=150)]
Words = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class DeclareRequest(Request):
    title: Title
    queue: QueueName | None = None
    severity: Severity = "sev2"


class ConvertRequest(Request):
    title: Title | None = None
    queue: QueueName | None = None
    severity: Severity = "sev2"


class LeadRequest(Request):
    user: SlackUser
    note: Words | None = None


class SeverityRequest(Request):
    severity: Severity


class UpdateRequest(Request):
    text: Words


class DeclareReply(Reply):
    incident: DeclaredIncident

    def data(self) -> dict[str, Any]:
        return {"ok": True, "incident": self.incident.model_dump(mode="json", by_alias=True)}

    def said(self) -> str:
        """The one line: what was opened, or (`already`) which incident it is."""
        found = self.incident
        name = found.channel_name or found.channel
        if found.already:
            return f"declared already: #{name} (incident {found.incident_id})"
        return f"declared a {found.severity} incident: #{name} (incident {found.incident_id})"

    def view(self) -> list[Block]:
        return [Note(mark=Mark.INFO if self.incident.already else Mark.OK, text=self.said())]


class ConvertReply(DeclareReply):
    def said(self) -> str:
        found = self.incident
        if found.already:
            return f"this channel runs incident {found.incident_id} already"
        return (
            f"this channel is now the {found.severity} incident's "
            f"(incident {found.incident_id}): status pinned, topic set"
        )


class LeadReply(Reply):
    change: LeadChange

    def data(self) -> dict[str, Any]:
        return {"ok": True, "lead": self.change.model_dump(mode="json", by_alias=True)}

    def view(self) -> list[Block]:
        if not self.change.changed:
            return [Note(mark=Mark.INFO, text="they lead this incident already")]
        if self.change.previous:
            return [Note(mark=Mark.OK, text="handed over: the new lead is on the status")]
        return [Note(mark=Mark.OK, text="the lead is set: on the status, and the page is acked")]


class SeverityReply(Reply):
    change: SeverityChange

    def data(self) -> dict[str, Any]:
        return {"ok": True, "severity": self.change.model_dump(mode="json", by_alias=True)}

    def view(self) -> list[Block]:
        if self.change.previous == self.change.severity:
            return [Note(mark=Mark.INFO, text=f"the incident is {self.change.severity} already")]
        return [
            Note(
                mark=Mark.OK,
                text=f"severity {self.change.previous} → {self.change.severity}",
            )
        ]


class UpdateReply(Reply):
    posted: UpdatePosted

    def data(self) -> dict[str, Any]:
        return {"ok": True, "update": self.posted.model_dump(mode="json", by_alias=True)}

    def view(self) -> list[Block]:
        where = " and to the stakeholders' channel" if self.posted.mirrored else ""
        return [Note(mark=Mark.OK, text=f"update posted in the channel{where}")]


def desk_of(ctx: CommandContext) -> IncidentDesk:
    if ctx.incidents is None:
        raise Refused(NO_DESK)
    return ctx.incidents


async def incident_here(ctx: CommandContext) -> tuple[IncidentDesk, str]:
    """The desk and the incident of the channel the command was typed in."""
    desk = desk_of(ctx)
    iid = await desk.incident_of_channel(ctx.channel) if ctx.channel else None
    if iid is None:
        raise Refused(NOT_HERE)
    return desk, iid


def declare_parser() -> WordParser:
    parser = WordParser("incident declare", DECLARE_USAGE)
    parser.add_argument("title", metavar="TITLE", help="what is wrong, in a few words (quoted)")
    parser.add_argument("--queue", metavar="Q", help="the queue it is about (its snapshot shows)")
    parser.add_argument(
        "--severity",
        choices=SEVERITY_CHOICES,
        help="sev1 (worst) to sev3; default sev2. At PAGE_SEVERITY or worse, it pages",
    )
    return parser


def convert_parser() -> WordParser:
    parser = WordParser("incident convert", CONVERT_USAGE)
    parser.add_argument(
        "title", metavar="TITLE", nargs="?", help="what is wrong (default: the channel's name)"
    )
    parser.add_argument("--queue", metavar="Q", help="the queue it is about (its snapshot shows)")
    parser.add_argument(
        "--severity",
        choices=SEVERITY_CHOICES,
        help="sev1 (worst) to sev3; default sev2. At PAGE_SEVERITY or worse, it pages",
    )
    return parser


def lead_parser() -> WordParser:
    parser = WordParser("incident lead", LEAD_USAGE)
    parser.add_argument("user", metavar="USER", help="who leads from now on: @someone")
    parser.add_argument("--note", metavar="TEXT", help="a hand-over note, said in the channel")
    return parser


def severity_parser() -> WordParser:
    parser = WordParser("incident severity", SEVERITY_USAGE)
    parser.add_argument(
        "severity", metavar="SEVERITY", choices=SEVERITY_CHOICES, help="sev1 (worst) to sev3"
    )
    return parser


def update_parser() -> WordParser:
    parser = WordParser("incident update", UPDATE_USAGE)
    parser.add_argument("text", metavar="TEXT", help="the update for everyone (quoted)")
    return parser


def parse_declare(words: Sequence[str]) -> DeclareRequest:
    return parse_words(DeclareRequest, declare_parser(), words)


def parse_convert(words: Sequence[str]) -> ConvertRequest:
    return parse_words(ConvertRequest, convert_parser(), words)


def parse_lead(words: Sequence[str]) -> LeadRequest:
    return parse_words(LeadRequest, lead_parser(), words)


def parse_severity(words: Sequence[str]) -> SeverityRequest:
    return parse_words(SeverityRequest, severity_parser(), words)


def parse_update(words: Sequence[str]) -> UpdateRequest:
    return parse_words(UpdateRequest, update_parser(), words)


async def run_declare(req: DeclareRequest, ctx: CommandContext) -> DeclareReply:
    desk = desk_of(ctx)
    queue = (await ctx.queues.require_queue(req.queue)).name if req.queue else None
    return DeclareReply(incident=await desk.declare(req.title, queue, req.severity, ctx.actor))


async def run_convert(req: ConvertRequest, ctx: CommandContext) -> ConvertReply:
    desk = desk_of(ctx)
    if not ctx.channel:
        raise Refused("run this in the channel to convert")
    queue = (await ctx.queues.require_queue(req.queue)).name if req.queue else None
    return ConvertReply(
        incident=await desk.convert(ctx.channel, req.title, queue, req.severity, ctx.actor)
    )


async def run_lead(req: LeadRequest, ctx: CommandContext) -> LeadReply:
    desk, iid = await incident_here(ctx)
    return LeadReply(change=await desk.set_lead(iid, req.user, by=ctx.actor, note=req.note))


async def run_severity(req: SeverityRequest, ctx: CommandContext) -> SeverityReply:
    desk, iid = await incident_here(ctx)
    return SeverityReply(change=await desk.set_severity(iid, req.severity, by=ctx.actor))


async def run_update(req: UpdateRequest, ctx: CommandContext) -> UpdateReply:
    desk, iid = await incident_here(ctx)
    return UpdateReply(posted=await desk.post_update(iid, req.text, by=ctx.actor))


register(
    Command(
        name="incident declare",
        usage=DECLARE_USAGE,
        summary="open an incident channel as an alert does: status, checklist, buttons",
        role=Role.OPERATOR,
        parse=parse_declare,
        run=run_declare,
        examples=(
            'incident declare "checkout emails stuck"',
            'incident declare "ocr backlog" --queue ocr --severity sev1',
        ),
        parser=declare_parser,
    )
)
register(
    Command(
        name="incident convert",
        usage=CONVERT_USAGE,
        summary="make the channel you are in the incident channel (status, topic, page)",
        role=Role.OPERATOR,
        parse=parse_convert,
        run=run_convert,
        examples=("incident convert", 'incident convert "ocr backlog" --queue ocr --severity sev1'),
        parser=convert_parser,
    )
)
register(
    Command(
        name="incident lead",
        usage=LEAD_USAGE,
        summary="who leads this channel's incident (a hand-over with --note); acks the page",
        role=Role.OPERATOR,
        parse=parse_lead,
        run=run_lead,
        examples=("incident lead @ann", 'incident lead @bo --note "db failover in progress"'),
        parser=lead_parser,
    )
)
register(
    Command(
        name="incident severity",
        usage=SEVERITY_USAGE,
        summary="change this channel's incident severity (pages at PAGE_SEVERITY)",
        role=Role.OPERATOR,
        parse=parse_severity,
        run=run_severity,
        examples=("incident severity sev1",),
        parser=severity_parser,
    )
)
register(
    Command(
        name="incident update",
        usage=UPDATE_USAGE,
        summary="post a status update: in the channel, on the status, to stakeholders",
        role=Role.OPERATOR,
        parse=parse_update,
        run=run_update,
        examples=('incident update "consumers scaled to 8; backlog falling"',),
        parser=update_parser,
    )
)


# -- follow-ups for the postmortem --------------------------------------------------------

FOLLOWUP_USAGE = 'incident followup "TEXT"'
FOLLOWUP_MAX = 500
"""A follow-up is an action item, a line in the postmortem's list: a longer one is refused
(the postmortem document has room for the details)."""
FollowupText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=FOLLOWUP_MAX)
]


class FollowupRequest(Request):
    text: FollowupText


class FollowupReply(Reply):
    added: FollowupAdded

    def data(self) -> dict[str, Any]:
        return {"ok": True, "followup": self.added.model_dump(mode="json", by_alias=True)}

    def view(self) -> list[Block]:
        where = (
            "the postmortem message lists it"
            if self.added.postmortem_updated
            else "the postmortem will list it when the incident resolves"
        )
        return [Note(mark=Mark.OK, text=f"follow-up {self.added.number} added; {where}")]


def followup_parser() -> WordParser:
    parser = WordParser("incident followup", FOLLOWUP_USAGE)
    parser.add_argument(
        "text",
        metavar="TEXT",
        help=f"an action item for the postmortem (quoted, at most {FOLLOWUP_MAX} characters); "
        "also after the resolve",
    )
    return parser


def parse_followup(words: Sequence[str]) -> FollowupRequest:
    return parse_words(FollowupRequest, followup_parser(), words)


async def run_followup(req: FollowupRequest, ctx: CommandContext) -> FollowupReply:
    desk, iid = await incident_here(ctx)
    return FollowupReply(added=await desk.add_followup(iid, req.text, by=ctx.actor))


register(
    Command(
        name="incident followup",
        usage=FOLLOWUP_USAGE,
        summary="add a follow-up to this incident's postmortem, also once resolved",
        role=Role.OPERATOR,
        parse=parse_followup,
        run=run_followup,
        examples=('incident followup "alert on oldest waiting age, not only depth"',),
        parser=followup_parser,
    )
)
