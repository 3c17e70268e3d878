"""`job show QUEUE JOB_ID`: one job as it is now, from a BullMQ queue or the DB queue."""

from __future__ import annotations

import json
from collections.abc import Sequence

from bot.queues.models import JobDetail
from bot.roles import Role
from commands.context import CommandContext
from commands.dlq import when
from commands.parsing import JobId, QueueName, Request, WordParser, parse_words
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Block, Code, Fields, Heading, Mark, Note

USAGE = "job show QUEUE JOB_ID"
DATA_CHARS = 2_500
"""A payload shown in a reply is cut here (with a note); `--json` has all of it."""


class JobShowRequest(Request):
    queue: QueueName
    job_id: JobId


class JobShowReply(Reply):
    job: JobDetail

    def view(self) -> list[Block]:
        j = self.job
        state = j.state if j.status in (None, j.state) else f"{j.state} (status '{j.status}')"
        items = [
            ("job", j.job_id),
            ("queue", j.shown),
            ("state", state + (" - in the DLQ" if j.in_dlq else "")),
            ("type" if j.kind == "postgres" else "name", j.job_name),
            ("attempts", str(j.attempts)),
            ("created", when(j.created_ms)),
        ]
        if j.run_after_ms is not None:
            items.append(("run after", when(j.run_after_ms)))
        if j.processed_ms is not None:
            items.append(("processed", when(j.processed_ms)))
        if j.finished_ms is not None:
            items.append(("finished", when(j.finished_ms)))
        if j.updated_ms is not None:
            items.append(("updated", when(j.updated_ms)))
        items.append(("latest failure", j.failed_reason or "-"))
        data = json.dumps(j.data, indent=2, ensure_ascii=False, default=str)
        blocks: list[Block] = [
            Fields(items=items),
            Heading(text="data (the job's payload)"),
            Code(text=data[:DATA_CHARS]),
        ]
        if len(data) > DATA_CHARS:
            blocks.append(
                Note(
                    mark=Mark.INFO,
                    text=f"payload cut at {DATA_CHARS:,} of {len(data):,} characters; "
                    "--json has all of it",
                )
            )
        if j.stacktrace:
            blocks += [
                Heading(text="the latest stack trace (from its worker)"),
                Code(text=j.stacktrace[0][:1500]),
            ]
        return blocks


def parser() -> WordParser:
    parser = WordParser("job show", USAGE)
    parser.add_argument("queue", metavar="QUEUE", help="the queue (or the DB queue's table)")
    parser.add_argument("job_id", metavar="JOB_ID", help="the job's id (a DB row's id)")
    return parser


def parse(words: Sequence[str]) -> JobShowRequest:
    return parse_words(JobShowRequest, parser(), words)


async def run(req: JobShowRequest, ctx: CommandContext) -> JobShowReply:
    return JobShowReply(job=await ctx.queues.job(req.queue, req.job_id))


register(
    Command(
        name="job show",
        usage=USAGE,
        summary="one job as it is now: state, data, attempts, the latest failure",
        role=Role.VIEWER,
        parse=parse,
        run=run,
        examples=("job show batch-jobs 42", "job show queue_jobs 6f1c…"),
        parser=parser,
    )
)
