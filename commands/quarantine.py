"""`quarantine QUEUE JOB_ID --reason TEXT`, `quarantine QUEUE --failed-matching REGEX`, and
`quarantine QUEUE --cluster K` or any of find's filters (commands/find.py: the jobs `find`
would list, each moved by the same script as one job is)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pydantic import Field, model_validator
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.errors import UsageError
from bot.patterns import PatternTooSlow, compile_user_pattern
from bot.queues.bullmq.quarantine import BulkMoveStopped
from bot.queues.models import BulkQuarantineResult, JobFilter, JobMove
from bot.roles import Role
from bot.text import plural
from commands.context import CommandContext
from commands.find import (
    FilteredActionReply,
    FilterRequest,
    add_filter_arguments,
    parse_plain_or_filtered,
    run_filtered,
)
from commands.parsing import (
    JobId,
    QueueName,
    Reason,
    Regex,
    Request,
    WordParser,
    whole_number,
)
from commands.registry import Command, register
from commands.reply import ErrorReply, Reply
from commands.view import Block, Fields, Mark, Note, Row, Table

USAGE = (
    "quarantine QUEUE JOB_ID --reason TEXT [--deep] | "
    "quarantine QUEUE --failed-matching REGEX [--limit N] [--reason TEXT] | "
    "quarantine QUEUE --cluster K (or find's filters) [--limit N] [--dry-run]"
)
DEFAULT_LIMIT = 100


def _check_one_form(
    job_id: str | None, failed_matching: str | None, reason: str | None, deep: bool
) -> None:
    if job_id and failed_matching:
        raise ValueError("give a JOB_ID or --failed-matching, not both")
    if not job_id and not failed_matching:
        raise ValueError(
            "give a JOB_ID, or --failed-matching REGEX for failed jobs (or filters: "
            "--cluster K, --name N...)"
        )
    if job_id and not reason:
        raise ValueError("--reason is required: say why, it stays with the job")
    if deep and not job_id:
        raise ValueError("--deep is for one JOB_ID (failed jobs are never searched)")


class QuarantineRequest(Request):
    queue: QueueName
    job_id: JobId | None = None
    reason: Reason | None = None
    failed_matching: Regex | None = None
    # No upper bound: a bulk move goes in bounded calls, so one command can move a whole
    # failed set (a limit over its size moves all of it).
    limit: int = Field(DEFAULT_LIMIT, ge=1)
    deep: bool = Field(
        False,
        description="a job in the middle of a long wait list: accept one long Redis call",
    )

    @model_validator(mode="after")
    def _one_form(self) -> QuarantineRequest:
        _check_one_form(self.job_id, self.failed_matching, self.reason, self.deep)
        return self


class QuarantineFilteredRequest(FilterRequest):
    """The words with one of find's filters (or --dry-run): the jobs they select (with
    --failed-matching as the reason filter, failed jobs unless --state says otherwise),
    or, with --dry-run alone, one of the plain forms, shown and not done."""

    queue: QueueName
    job_id: JobId | None = None
    reason: Reason | None = None
    failed_matching: Regex | None = None
    limit: int = Field(DEFAULT_LIMIT, ge=1)
    deep: bool = False

    @property
    def selects(self) -> bool:
        return self.filtered

    def plain(self) -> QuarantineRequest:
        return QuarantineRequest(
            queue=self.queue,
            job_id=self.job_id,
            reason=self.reason,
            failed_matching=self.failed_matching,
            limit=self.limit,
            deep=self.deep,
        )

    def job_filter(self, default_limit: int) -> JobFilter:
        flt = super().job_filter(default_limit)
        if self.failed_matching is None:
            return flt
        return replace(
            flt,
            reason=compile_user_pattern(self.failed_matching),
            states=flt.states or ("failed",),
        )

    @model_validator(mode="after")
    def _one_form(self) -> QuarantineFilteredRequest:
        if not self.selects:
            _check_one_form(self.job_id, self.failed_matching, self.reason, self.deep)
        elif self.job_id:
            raise ValueError("give a JOB_ID or filters, not both")
        elif self.deep:
            raise ValueError("--deep is for one JOB_ID")
        return self


class QuarantineReply(Reply):
    queue: str
    dlq: str
    move: JobMove

    def jobs_moved(self) -> dict[str, int]:
        return {"quarantined": 1}

    def view(self) -> list[Block]:
        m = self.move
        where = ""
        if m.list_end is not None:
            where = (
                f" (the {m.list_end} job)"
                if not m.depth
                else f" ({plural(m.depth, 'job')} from the {m.list_end} end)"
            )
        return [
            Note(
                mark=Mark.OK,
                text=f"job {m.job_id} moved from '{self.queue}' ({m.from_state}) to "
                f"'{self.dlq}'{where}; payload kept, replay with: dlq replay {self.queue}",
            )
        ]


class QuarantineRefusedReply(ErrorReply):
    """One job not moved: the one-line reason, and in --json the facts behind it (for a job
    too deep in a long list: the list, its length, the bound searched, the estimated cost)."""

    move: JobMove

    def data(self) -> dict[str, Any]:
        return {**super().data(), "move": self.move.model_dump(mode="json", by_alias=True)}


class BulkQuarantineReply(Reply):
    result: BulkQuarantineResult

    def jobs_moved(self) -> dict[str, int]:
        return {"quarantined": len(self.result.moved)} if self.result.moved else {}

    def view(self) -> list[Block]:
        r = self.result
        if not r.moved and not r.skipped:
            return [
                Note(
                    mark=Mark.INFO,
                    text=f"no failed job in '{r.queue}' matches /{r.pattern}/ "
                    f"({plural(r.scanned, 'failed job')} read); nothing moved",
                )
            ]
        blocks: list[Block] = [
            Note(
                mark=Mark.OK if r.moved else Mark.INFO,
                text=f"{plural(len(r.moved), 'failed job')} matching /{r.pattern}/ moved from "
                f"'{r.queue}' to '{r.dlq}' ({plural(r.scanned, 'failed job')} read, "
                f"{plural(r.batches, 'batch')})",
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


def _stopped_error(stopped: BulkMoveStopped) -> Exception:
    """The error that stopped a bulk move, its one line extended by how many moved before.

    It keeps its kind, so the runner reports it as for any command (a Redis that went away
    is "Redis unreachable at host:port", and is not written to the audit stream it is on)."""
    done, cause = stopped.partial, stopped.cause
    count = len(done.moved)
    maybe = stopped.maybe_more
    if count == 0 and not maybe:
        tail = "nothing was moved"
    else:
        tail = (
            f"stopped after moving {plural(count, 'failed job')}{maybe} from '{done.queue}' to "
            f"'{done.dlq}'; the rest are still in '{done.queue}': run the command again to "
            "move them"
        )
    first_line = (str(cause).splitlines() or [type(cause).__name__])[0]
    if isinstance(cause, PatternTooSlow):
        return PatternTooSlow(f"{first_line}; {tail}")
    try:
        return type(cause)(f"{first_line}; {tail}")
    except TypeError:  # an exception type that wants other arguments: still a Redis failure
        return RedisConnectionError(f"{first_line}; {tail}")


class BulkPreviewReply(Reply):
    queue: str
    dlq: str
    pattern: str
    limit: int
    count: int
    read: int
    counted_without_reading: bool = False
    matches: list[tuple[str, str]]
    """The first few matches (the preview shows 15, however many would move)."""

    @property
    def nothing_to_do(self) -> bool:
        return self.count == 0

    def view(self) -> list[Block]:
        more = ", the --limit" if self.count >= self.limit else ""
        how = (
            "every failed job matches; counted, not read"
            if self.counted_without_reading
            else f"{plural(self.read, 'failed job')} read"
        )
        if not self.count:
            return [
                Note(
                    mark=Mark.INFO,
                    text=f"no failed job in '{self.queue}' matches /{self.pattern}/ "
                    f"({how}); nothing to move",
                )
            ]
        blocks: list[Block] = [
            Note(
                mark=Mark.WARN,
                text=f"would move {plural(self.count, 'failed job')} matching "
                f"/{self.pattern}/ from '{self.queue}' to '{self.dlq}' ({how}{more})",
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
    found = await ctx.queues.preview_failed_matching(
        req.queue, compile_user_pattern(pattern), limit=req.limit
    )
    return BulkPreviewReply(
        queue=req.queue,
        dlq=ctx.queues.dlq_shown(req.queue),
        pattern=pattern,
        limit=req.limit,
        count=found.count,
        read=found.read,
        counted_without_reading=found.counted_without_reading,
        matches=found.sample,
    )


AnyQuarantine = QuarantineRequest | QuarantineFilteredRequest


async def preview_or_dry_run(req: AnyQuarantine, ctx: CommandContext) -> Reply:
    """What the request would move, changing nothing: the confirmation's preview, and what
    --dry-run answers (one job: where it is now)."""
    if isinstance(req, QuarantineFilteredRequest):
        if req.selects:
            return await _filtered(req, ctx, preview=not req.dry_run)
        req_plain = req.plain()
    else:
        req_plain = req
    if req_plain.failed_matching is not None:
        return await preview(req_plain, ctx)
    job_id = req_plain.job_id or ""
    detail = await ctx.queues.job(req.queue, job_id)
    return DryRunReply(queue=req.queue, job_id=job_id, state=detail.state)


class DryRunReply(Reply):
    queue: str
    job_id: str
    state: str

    def view(self) -> list[Block]:
        return [
            Note(
                mark=Mark.WARN,
                text=f"dry run: would move job {self.job_id} ({self.state}) from "
                f"'{self.queue}' to its DLQ; nothing changed",
            )
        ]


def parser() -> WordParser:
    parser = WordParser("quarantine", USAGE)
    parser.add_argument("queue", metavar="QUEUE", help="the queue the job is in")
    parser.add_argument(
        "job_id", metavar="JOB_ID", nargs="?", help="the job to move (or --failed-matching)"
    )
    parser.add_argument(
        "--reason", metavar="TEXT", help="why: kept with the job (required with JOB_ID)"
    )
    parser.add_argument(
        "--failed-matching",
        dest="failed_matching",
        metavar="REGEX",
        help="move the failed jobs whose failure reason matches (asks to confirm)",
    )
    parser.add_argument(
        "--limit",
        type=whole_number,
        metavar="N",
        help=f"with --failed-matching or filters: move at most N (default {DEFAULT_LIMIT})",
    )
    add_filter_arguments(parser, reason_flag=None, limit=False, suppress=True)
    parser.add_argument(
        "--deep",
        action="store_true",
        help="a job deep in a long wait list: accept one long Redis call to find it",
    )
    return parser


def parse(words: Sequence[str]) -> AnyQuarantine:
    """The request as it always was, or with find's filters (or --dry-run) the filtered
    one: the plain words make exactly the request they made before filters existed."""
    found: AnyQuarantine = parse_plain_or_filtered(
        QuarantineRequest, QuarantineFilteredRequest, parser, words, own=("limit",)
    )
    return found


def _filters(req: QuarantineFilteredRequest) -> str:
    words = req.described()
    if req.failed_matching is None:
        return words
    regex = f"reason /{req.failed_matching}/"
    return regex if words == "no filter" else f"{words}, {regex}"


async def _filtered(
    req: QuarantineFilteredRequest, ctx: CommandContext, *, preview: bool
) -> FilteredActionReply:
    reply = await run_filtered(req, ctx, "quarantine", preview=preview, reason=req.reason)
    return reply.model_copy(update={"filters": _filters(req)})


async def run(req: AnyQuarantine, ctx: CommandContext) -> Reply:
    if isinstance(req, QuarantineFilteredRequest):
        if req.selects:
            return await _filtered(req, ctx, preview=False)
        if req.dry_run:
            return await preview_or_dry_run(req, ctx)
        req = req.plain()
    if req.failed_matching is not None:
        try:
            result = await ctx.queues.quarantine_matching(
                req.queue,
                compile_user_pattern(req.failed_matching),
                limit=req.limit,
                reason=req.reason or f"failedReason matched /{req.failed_matching}/",
                actor=ctx.actor,
            )
        except BulkMoveStopped as stopped:
            raise _stopped_error(stopped) from stopped.cause
        return BulkQuarantineReply(result=result)
    if req.job_id is None or req.reason is None:  # the request's validator rules this out
        raise UsageError(f"give a JOB_ID and --reason (usage: {USAGE})")
    move = await ctx.queues.quarantine(
        req.queue, req.job_id, reason=req.reason, actor=ctx.actor, deep=req.deep
    )
    if not move.moved:
        return QuarantineRefusedReply(
            message=move.problem or f"job {req.job_id} was not moved", move=move
        )
    return QuarantineReply(queue=req.queue, dlq=ctx.queues.dlq_shown(req.queue), move=move)


def _asks(req: AnyQuarantine) -> bool:
    """A bulk move asks first; one job does not, a dry run never does."""
    if isinstance(req, QuarantineFilteredRequest):
        return (req.selects or req.failed_matching is not None) and not req.dry_run
    return req.failed_matching is not None


register(
    Command(
        name="quarantine",
        usage=USAGE,
        summary="move a poison job (or failed jobs matching a regex) to the queue's DLQ, "
        "payload kept",
        role=Role.OPERATOR,
        parse=parse,
        run=run,
        confirm=_asks,
        preview=preview_or_dry_run,
        examples=(
            'quarantine batch-jobs 1234 --reason "crashes the PDF renderer"',
            'quarantine batch-jobs --failed-matching "ECONNRESET" --limit 500',
            "quarantine batch-jobs --cluster 3f2a91c0 --dry-run",
        ),
        parser=parser,
    )
)
