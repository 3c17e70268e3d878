"""`dlq list QUEUE`, `dlq show QUEUE JOB_ID`, `dlq replay QUEUE [--count 10]`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import Field

from bot.queues.models import DlqEntry, DlqListing, ReplayResult
from bot.roles import Role
from bot.text import plural
from commands.context import CommandContext
from commands.parsing import JobId, QueueName, Request, WordParser, parse_words, whole_number
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Block, Code, Fields, Heading, Mark, Note, Row, Table

LIST_USAGE = "dlq list QUEUE [--limit 20]"
SHOW_USAGE = "dlq show QUEUE JOB_ID"
REPLAY_USAGE = "dlq replay QUEUE [--count 10] [--reset-attempts]"


def when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class DlqListRequest(Request):
    queue: QueueName
    limit: int = Field(20, ge=1, le=500)


class DlqShowRequest(Request):
    queue: QueueName
    job_id: JobId


class DlqReplayRequest(Request):
    queue: QueueName
    count: int = Field(10, ge=1, le=10_000)
    reset_attempts: bool = False


class DlqListReply(Reply):
    listing: DlqListing
    heading: str = "newest first"
    replay_preview: bool = False

    @property
    def nothing_to_do(self) -> bool:
        return self.replay_preview and not self.listing.entries

    def view(self) -> list[Block]:
        li = self.listing
        if not li.entries:
            tail = "; nothing to replay" if self.replay_preview else ""
            return [Note(mark=Mark.INFO, text=f"'{li.dlq}' is empty{tail}")]
        return [
            Note(
                mark=Mark.INFO, text=f"'{li.dlq}' holds {plural(li.depth, 'job')}; {self.heading}"
            ),
            Table(
                columns=["job", "name", "from", "by", "when", "why"],
                rows=[
                    Row(
                        cells=[
                            e.job_id,
                            e.name,
                            e.from_state or "-",
                            e.quarantined_by or "-",
                            when(e.quarantined_at),
                            e.quarantine_reason or "-",
                        ]
                    )
                    for e in li.entries
                ],
            ),
        ]


class DlqShowReply(Reply):
    entry: DlqEntry

    def view(self) -> list[Block]:
        e = self.entry
        blocks: list[Block] = [
            Fields(
                items=[
                    ("job", e.job_id),
                    ("name", e.name),
                    ("quarantined", f"{when(e.quarantined_at)} by {e.quarantined_by or '-'}"),
                    ("why", e.quarantine_reason or "-"),
                    ("was", f"{e.from_state or '-'} in '{e.from_queue or '-'}'"),
                    ("attempts made", str(e.attempts_made)),
                    ("original failure", e.original_failed_reason or "-"),
                    ("enqueued", when(e.timestamp)),
                ]
            ),
            Heading(text="data (the job's payload)"),
            Code(text=json.dumps(e.data, indent=2, ensure_ascii=False)[:2500]),
        ]
        if e.stacktrace:
            blocks += [
                Heading(text="the job's own stack trace (from its worker, when it last failed)"),
                Code(text=e.stacktrace[-1][:1500]),
            ]
        return blocks


class DlqReplayReply(Reply):
    result: ReplayResult

    def view(self) -> list[Block]:
        r = self.result
        if not r.replayed and not r.left:
            return [Note(mark=Mark.INFO, text=f"'{r.dlq}' is empty; nothing to replay")]
        blocks: list[Block] = [
            Note(
                mark=Mark.OK if r.replayed else Mark.INFO,
                text=f"{plural(len(r.replayed), 'job')} replayed from '{r.dlq}' into '{r.queue}'",
            )
        ]
        if r.replayed:
            blocks.append(
                Fields(
                    items=[
                        ("replayed", ", ".join(f"{j.job_id} ({j.name})" for j in r.replayed[:30]))
                    ]
                )
            )
        if r.left:
            blocks.append(
                Table(
                    columns=["job", "left in the DLQ because"],
                    rows=[Row(mark=Mark.WARN, cells=[j.job_id, j.problem or ""]) for j in r.left],
                )
            )
        return blocks


def list_parser() -> WordParser:
    parser = WordParser("dlq list", LIST_USAGE)
    parser.add_argument("queue", metavar="QUEUE", help="the queue whose DLQ to list")
    parser.add_argument(
        "--limit",
        type=whole_number,
        metavar="N",
        help="show at most N jobs (default 20, 500 at most)",
    )
    return parser


def show_parser() -> WordParser:
    parser = WordParser("dlq show", SHOW_USAGE)
    parser.add_argument("queue", metavar="QUEUE", help="the queue whose DLQ holds the job")
    parser.add_argument("job_id", metavar="JOB_ID", help="the quarantined job")
    return parser


def replay_parser() -> WordParser:
    parser = WordParser("dlq replay", REPLAY_USAGE)
    parser.add_argument("queue", metavar="QUEUE", help="the queue to put the jobs back into")
    parser.add_argument(
        "--count",
        type=whole_number,
        metavar="N",
        help="how many of the oldest quarantined jobs (default 10)",
    )
    parser.add_argument(
        "--reset-attempts",
        action="store_true",
        default=None,
        help="a DB queue's row starts again from 0 attempts (a BullMQ job always does)",
    )
    return parser


def parse_list(words: Sequence[str]) -> DlqListRequest:
    return parse_words(DlqListRequest, list_parser(), words)


def parse_show(words: Sequence[str]) -> DlqShowRequest:
    return parse_words(DlqShowRequest, show_parser(), words)


def parse_replay(words: Sequence[str]) -> DlqReplayRequest:
    return parse_words(DlqReplayRequest, replay_parser(), words)


async def run_list(req: DlqListRequest, ctx: CommandContext) -> DlqListReply:
    return DlqListReply(listing=await ctx.queues.dlq_list(req.queue, limit=req.limit))


async def run_show(req: DlqShowRequest, ctx: CommandContext) -> DlqShowReply:
    return DlqShowReply(entry=await ctx.queues.dlq_show(req.queue, req.job_id))


async def run_replay(req: DlqReplayRequest, ctx: CommandContext) -> DlqReplayReply:
    result = await ctx.queues.dlq_replay(
        req.queue, count=req.count, reset_attempts=req.reset_attempts
    )
    return DlqReplayReply(result=result)


PREVIEW_ROWS = 15
"""Jobs a replay's preview shows: the count is the DLQ's depth, not a read of every job."""


async def preview_replay(req: DlqReplayRequest, ctx: CommandContext) -> DlqListReply:
    shown = min(req.count, PREVIEW_ROWS)
    listing = await ctx.queues.dlq_list(req.queue, limit=shown, oldest_first=True)
    count = min(req.count, listing.depth)
    shown_count = len(listing.entries)
    if count > shown_count:
        heading = (
            f"replay would put the oldest {plural(count, 'job')} back into '{req.queue}' "
            f"(the first {shown_count:,} shown)"
        )
    elif shown_count == 1:
        heading = f"replay would put this job back into '{req.queue}'"
    else:
        heading = f"replay would put these {shown_count:,} jobs back into '{req.queue}'"
    return DlqListReply(listing=listing, heading=heading, replay_preview=True)


register(
    Command(
        name="dlq list",
        usage=LIST_USAGE,
        summary="what is quarantined, why, by whom, when",
        role=Role.VIEWER,
        parse=parse_list,
        run=run_list,
        examples=("dlq list batch-jobs",),
        parser=list_parser,
    )
)
register(
    Command(
        name="dlq show",
        usage=SHOW_USAGE,
        summary="one quarantined job: payload, reason, history",
        role=Role.VIEWER,
        parse=parse_show,
        run=run_show,
        examples=("dlq show batch-jobs 1234",),
        parser=show_parser,
    )
)
register(
    Command(
        name="dlq replay",
        usage=REPLAY_USAGE,
        summary="canary re-enqueue: the oldest N quarantined jobs go back to the queue",
        role=Role.OPERATOR,
        parse=parse_replay,
        run=run_replay,
        examples=("dlq replay batch-jobs --count 10",),
        confirm=lambda req: True,
        preview=preview_replay,
        parser=replay_parser,
    )
)
