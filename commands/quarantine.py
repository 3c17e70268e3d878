"""`quarantine QUEUE JOB_ID --reason TEXT` and `quarantine QUEUE --failed-matching REGEX`."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import Field, model_validator

from bot.errors import Refused, UsageError
from bot.queues.models import BulkQuarantineResult, JobMove
from bot.roles import Role
from commands.context import CommandContext
from commands.parsing import JobId, QueueName, Reason, Regex, Request, WordParser, parse_words
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Block, Fields, Mark, Note, Row, Table

USAGE = (
    "quarantine QUEUE JOB_ID --reason TEXT | "
    "quarantine QUEUE --failed-matching REGEX [--limit N] [--reason TEXT]"
)
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000


class QuarantineRequest(Request):
    queue: QueueName
    job_id: JobId | None = None
    reason: Reason | None = None
    failed_matching: Regex | None = None
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)

    @model_validator(mode="after")
    def _one_form(self) -> QuarantineRequest:
        if self.job_id and self.failed_matching:
            raise ValueError("give a JOB_ID or --failed-matching, not both")
        if not self.job_id and not self.failed_matching:
            raise ValueError("give a JOB_ID, or --failed-matching REGEX for failed jobs")
        if self.job_id and not self.reason:
            raise ValueError("--reason is required: say why, it stays with the job")
        return self


class QuarantineReply(Reply):
    queue: str
    dlq: str
    move: JobMove

    def view(self) -> list[Block]:
        return [
            Note(
                mark=Mark.OK,
                text=f"job {self.move.job_id} moved from '{self.queue}' ({self.move.from_state})"
                f" to '{self.dlq}'; payload kept, replay with: dlq replay {self.queue}",
            )
        ]


class BulkQuarantineReply(Reply):
    result: BulkQuarantineResult

    def view(self) -> list[Block]:
        r = self.result
        blocks: list[Block] = [
            Note(
                mark=Mark.OK if r.moved else Mark.INFO,
                text=f"{len(r.moved)} failed job(s) matching /{r.pattern}/ moved from "
                f"'{r.queue}' to '{r.dlq}' ({r.scanned} failed jobs read, {r.batches} batches)",
            )
        ]
        if r.moved:
            shown = ", ".join(m.job_id for m in r.moved[:30])
            more = f" and {len(r.moved) - 30} more" if len(r.moved) > 30 else ""
            blocks.append(Fields(items=[("moved", shown + more)]))
        if r.skipped:
            blocks.append(
                Table(
                    columns=["job", "not moved because"],
                    rows=[
                        Row(mark=Mark.WARN, cells=[m.job_id, m.problem or ""])
                        for m in r.skipped[:20]
                    ],
                )
            )
        return blocks


class BulkPreviewReply(Reply):
    queue: str
    dlq: str
    pattern: str
    limit: int
    read: int
    matches: list[tuple[str, str]]

    def view(self) -> list[Block]:
        more = " (the --limit)" if len(self.matches) >= self.limit else ""
        blocks: list[Block] = [
            Note(
                mark=Mark.WARN if self.matches else Mark.INFO,
                text=f"would move {len(self.matches)}{more} failed job(s) matching "
                f"/{self.pattern}/ from '{self.queue}' to '{self.dlq}' "
                f"({self.read} failed jobs read)",
            )
        ]
        if self.matches:
            blocks.append(
                Table(
                    columns=["job", "failed because"],
                    rows=[
                        Row(cells=[i, r.splitlines()[0] if r else ""]) for i, r in self.matches[:15]
                    ],
                )
            )
        return blocks


async def preview(req: QuarantineRequest, ctx: CommandContext) -> BulkPreviewReply:
    pattern = req.failed_matching or ""
    matches, read = await ctx.queues.find_failed_matching(
        req.queue, re.compile(pattern), limit=req.limit
    )
    return BulkPreviewReply(
        queue=req.queue,
        dlq=ctx.queues.store.dlq_name(req.queue),
        pattern=pattern,
        limit=req.limit,
        read=read,
        matches=matches,
    )


def parse(words: Sequence[str]) -> QuarantineRequest:
    parser = WordParser("quarantine", USAGE)
    parser.add_argument("queue")
    parser.add_argument("job_id", nargs="?")
    parser.add_argument("--reason")
    parser.add_argument("--failed-matching", dest="failed_matching")
    parser.add_argument("--limit", type=int)
    return parse_words(QuarantineRequest, parser, words)


async def run(req: QuarantineRequest, ctx: CommandContext) -> Reply:
    if req.failed_matching is not None:
        result = await ctx.queues.quarantine_matching(
            req.queue,
            re.compile(req.failed_matching),
            limit=req.limit,
            reason=req.reason or f"failedReason matched /{req.failed_matching}/",
            actor=ctx.actor,
        )
        return BulkQuarantineReply(result=result)
    if req.job_id is None or req.reason is None:  # the request's validator rules this out
        raise UsageError(f"give a JOB_ID and --reason (usage: {USAGE})")
    move = await ctx.queues.quarantine(req.queue, req.job_id, reason=req.reason, actor=ctx.actor)
    if not move.moved:
        raise Refused(move.problem or f"job {req.job_id} was not moved")
    return QuarantineReply(queue=req.queue, dlq=ctx.queues.store.dlq_name(req.queue), move=move)


register(
    Command(
        name="quarantine",
        usage=USAGE,
        summary="move a poison job (or failed jobs matching a regex) to the queue's DLQ, "
        "payload kept",
        role=Role.OPERATOR,
        parse=parse,
        run=run,
        confirm=lambda req: req.failed_matching is not None,
        preview=preview,
        examples=(
            'quarantine batch-jobs 1234 --reason "crashes the PDF renderer"',
            'quarantine batch-jobs --failed-matching "ECONNRESET" --limit 500',
        ),
    )
)
