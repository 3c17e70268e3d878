"""`pause QUEUE`, `resume QUEUE`, `retry QUEUE [--count N]`, and `retry QUEUE --cluster K`
or any of find's filters (commands/find.py: exactly the jobs `find` would list)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, model_validator

from bot.roles import Role
from bot.text import plural
from commands.context import CommandContext
from commands.find import (
    FilterRequest,
    add_filter_arguments,
    parse_plain_or_filtered,
    run_filtered,
)
from commands.parsing import QueueName, Request, WordParser, parse_words, whole_number
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Block, Mark, Note

RETRY_USAGE = "retry QUEUE [--count N] | retry QUEUE --cluster K (or find's filters) [--dry-run]"


class QueueRequest(Request):
    queue: QueueName


class RetryRequest(Request):
    queue: QueueName
    count: int | None = Field(None, ge=1, le=1_000_000)


class RetryFilteredRequest(FilterRequest):
    """With find's filters (or --dry-run): the failed jobs they select (a --state may add
    completed ones), or with --dry-run alone what `retry QUEUE [--count N]` would move."""

    queue: QueueName
    count: int | None = Field(None, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _one_form(self) -> RetryFilteredRequest:
        if self.count is not None and self.filtered:
            raise ValueError("give --count or filters, not both (filters take --limit)")
        if self.limit is not None and not self.filtered:
            raise ValueError("--limit goes with filters; without them, use --count N")
        return self


class PauseReply(Reply):
    queue: str
    paused: bool
    was_paused: bool

    def view(self) -> list[Block]:
        if self.paused == self.was_paused:
            text = (
                f"'{self.queue}' was already paused; workers take no new jobs"
                if self.paused
                else f"'{self.queue}' was not paused; nothing to resume"
            )
        elif self.paused:
            text = f"'{self.queue}' paused; workers take no new jobs"
        else:
            text = f"'{self.queue}' resumed"
        return [Note(mark=Mark.PAUSED if self.paused else Mark.OK, text=text)]


class RetryReply(Reply):
    queue: str
    retried: int

    def view(self) -> list[Block]:
        return [
            Note(
                mark=Mark.OK if self.retried else Mark.INFO,
                text=f"{plural(self.retried, 'failed job')} in '{self.queue}' moved back "
                "to waiting",
            )
        ]


def pause_parser() -> WordParser:
    parser = WordParser("pause", "pause QUEUE")
    parser.add_argument("queue", metavar="QUEUE", help="the queue to pause")
    return parser


def resume_parser() -> WordParser:
    parser = WordParser("resume", "resume QUEUE")
    parser.add_argument("queue", metavar="QUEUE", help="the paused queue to resume")
    return parser


def retry_parser() -> WordParser:
    parser = WordParser("retry", RETRY_USAGE)
    parser.add_argument("queue", metavar="QUEUE", help="the queue whose failed jobs to retry")
    parser.add_argument(
        "--count",
        type=whole_number,
        metavar="N",
        help="retry only the N oldest failed jobs (default: all)",
    )
    add_filter_arguments(parser, suppress=True)
    return parser


def parse_pause(words: Sequence[str]) -> QueueRequest:
    return parse_words(QueueRequest, pause_parser(), words)


def parse_resume(words: Sequence[str]) -> QueueRequest:
    return parse_words(QueueRequest, resume_parser(), words)


def parse_retry(words: Sequence[str]) -> RetryRequest | RetryFilteredRequest:
    """`retry QUEUE [--count N]` makes the request it always made; with a filter (or
    --dry-run), the filtered one."""
    found: RetryRequest | RetryFilteredRequest = parse_plain_or_filtered(
        RetryRequest, RetryFilteredRequest, retry_parser, words
    )
    return found


async def run_pause(req: QueueRequest, ctx: CommandContext) -> PauseReply:
    was = await ctx.queues.pause(req.queue)
    return PauseReply(queue=req.queue, paused=True, was_paused=was)


async def run_resume(req: QueueRequest, ctx: CommandContext) -> PauseReply:
    was = await ctx.queues.resume(req.queue)
    return PauseReply(queue=req.queue, paused=False, was_paused=was)


async def run_retry(req: RetryRequest | RetryFilteredRequest, ctx: CommandContext) -> Reply:
    if isinstance(req, RetryFilteredRequest):
        if req.filtered:
            return await run_filtered(req, ctx, "retry", states=("failed",))
        count = await ctx.queues.retry_count(req.queue)  # --dry-run alone
        wanted = count if req.count is None else min(count, req.count)
        return RetryDryRunReply(queue=req.queue, would_retry=wanted)
    return RetryReply(queue=req.queue, retried=await ctx.queues.retry(req.queue, count=req.count))


async def preview_retry(req: RetryFilteredRequest, ctx: CommandContext) -> Reply:
    return await run_filtered(req, ctx, "retry", preview=True, states=("failed",))


class RetryDryRunReply(Reply):
    queue: str
    would_retry: int

    def view(self) -> list[Block]:
        return [
            Note(
                mark=Mark.WARN if self.would_retry else Mark.INFO,
                text=f"dry run: would move {plural(self.would_retry, 'failed job')} of "
                f"'{self.queue}' back to waiting; nothing changed",
            )
        ]


register(
    Command(
        name="pause",
        usage="pause QUEUE",
        summary="pause a queue: workers take no new jobs",
        role=Role.OPERATOR,
        parse=parse_pause,
        run=run_pause,
        examples=("pause batch-jobs",),
        parser=pause_parser,
    )
)
register(
    Command(
        name="resume",
        usage="resume QUEUE",
        summary="resume a paused queue",
        role=Role.OPERATOR,
        parse=parse_resume,
        run=run_resume,
        examples=("resume batch-jobs",),
        parser=resume_parser,
    )
)
register(
    Command(
        name="retry",
        usage=RETRY_USAGE,
        summary="move failed jobs back to waiting (oldest first; all unless --count)",
        role=Role.OPERATOR,
        parse=parse_retry,
        run=run_retry,
        confirm=lambda req: (
            isinstance(req, RetryFilteredRequest) and req.filtered and not req.dry_run
        ),
        preview=preview_retry,
        examples=("retry batch-jobs --count 50", "retry batch-jobs --cluster 3f2a91c0"),
        parser=retry_parser,
    )
)
