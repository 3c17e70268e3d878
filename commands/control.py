"""`pause QUEUE`, `resume QUEUE`, `retry QUEUE [--count N]`."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from bot.roles import Role
from bot.text import plural
from commands.context import CommandContext
from commands.parsing import QueueName, Request, WordParser, parse_words, whole_number
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Block, Mark, Note


class QueueRequest(Request):
    queue: QueueName


class RetryRequest(Request):
    queue: QueueName
    count: int | None = Field(None, ge=1, le=1_000_000)


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
    parser = WordParser("retry", "retry QUEUE [--count N]")
    parser.add_argument("queue", metavar="QUEUE", help="the queue whose failed jobs to retry")
    parser.add_argument(
        "--count",
        type=whole_number,
        metavar="N",
        help="retry only the N oldest failed jobs (default: all)",
    )
    return parser


def parse_pause(words: Sequence[str]) -> QueueRequest:
    return parse_words(QueueRequest, pause_parser(), words)


def parse_resume(words: Sequence[str]) -> QueueRequest:
    return parse_words(QueueRequest, resume_parser(), words)


def parse_retry(words: Sequence[str]) -> RetryRequest:
    return parse_words(RetryRequest, retry_parser(), words)


async def run_pause(req: QueueRequest, ctx: CommandContext) -> PauseReply:
    was = await ctx.queues.pause(req.queue)
    return PauseReply(queue=req.queue, paused=True, was_paused=was)


async def run_resume(req: QueueRequest, ctx: CommandContext) -> PauseReply:
    was = await ctx.queues.resume(req.queue)
    return PauseReply(queue=req.queue, paused=False, was_paused=was)


async def run_retry(req: RetryRequest, ctx: CommandContext) -> RetryReply:
    return RetryReply(queue=req.queue, retried=await ctx.queues.retry(req.queue, count=req.count))


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
        usage="retry QUEUE [--count N]",
        summary="move failed jobs back to waiting (oldest first; all unless --count)",
        role=Role.OPERATOR,
        parse=parse_retry,
        run=run_retry,
        examples=("retry batch-jobs --count 50",),
        parser=retry_parser,
    )
)
