"""`drain [QUEUE] [--max-duration 60s] [--max-jobs N] [--concurrency 2]`: call the app's
drain endpoint now and show what each queue processed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import AfterValidator, Field

from bot.drain import MAX_DURATION_MS, DrainResponse
from bot.durations import format_duration_ms
from bot.errors import OperationFailed
from bot.roles import Role
from commands.context import CommandContext
from commands.parsing import (
    QueueName,
    Request,
    WordParser,
    duration_argument,
    parse_words,
    whole_number,
)
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Block, Mark, Note, Row, Table

USAGE = "drain [QUEUE] [--max-duration 60s] [--max-jobs N] [--concurrency 2]"


def _max_duration(ms: int) -> int:
    """1s to the endpoint's cap, said in durations (not "less than or equal to 600000")."""
    if not 1000 <= ms <= MAX_DURATION_MS:
        longest = format_duration_ms(MAX_DURATION_MS)
        raise ValueError(f"{format_duration_ms(ms)} is not within 1s and {longest}")
    return ms


class DrainRequest(Request):
    queue: QueueName | None = None
    max_duration_ms: Annotated[int, AfterValidator(_max_duration)] = 60_000
    max_jobs: int | None = Field(None, ge=1)
    concurrency: int = Field(2, ge=1, le=20)


class DrainReply(Reply):
    queue: str | None
    result: DrainResponse

    def view(self) -> list[Block]:
        r = self.result
        return [
            Note(
                mark=Mark.OK if not r.total_failed else Mark.WARN,
                text=f"drained {self.queue or 'every queue'}: {r.total_processed} processed, "
                f"{r.total_failed} failed in {r.duration_ms} ms",
            ),
            Table(
                columns=["queue", "processed", "failed", "idle at"],
                rows=[
                    Row(
                        mark=Mark.WARN if q.jobs_failed else None,
                        cells=[
                            name,
                            str(q.jobs_processed),
                            str(q.jobs_failed),
                            "already idle" if q.idle_at == 0 else f"{q.idle_at} ms",
                        ],
                    )
                    for name, q in r.queues.items()
                ],
            ),
        ]


def parser() -> WordParser:
    parser = WordParser("drain", USAGE)
    parser.add_argument(
        "queue", metavar="QUEUE", nargs="?", help="drain only this queue (default: every queue)"
    )
    parser.add_argument(
        "--max-duration",
        dest="max_duration_ms",
        type=duration_argument,
        metavar="DURATION",
        help="how long the app may drain, 1s to 10m (default 60s)",
    )
    parser.add_argument(
        "--max-jobs",
        dest="max_jobs",
        type=whole_number,
        metavar="N",
        help="stop after N jobs (default: no limit)",
    )
    parser.add_argument(
        "--concurrency",
        type=whole_number,
        metavar="N",
        help="jobs the app runs at once, 1 to 20 (default 2)",
    )
    return parser


def parse(words: Sequence[str]) -> DrainRequest:
    return parse_words(DrainRequest, parser(), words)


async def run(req: DrainRequest, ctx: CommandContext) -> DrainReply:
    if ctx.drain is None:
        raise OperationFailed("DRAIN_URL is not set: queueops does not know the app to drain")
    # Due delayed jobs first, as the cron does: an endpoint that looks for waiting work
    # would start no Worker for them (bot/queues/bullmq/lua/promote_due.lua).
    # A queue the catalogue does not know is refused here, before the app is called.
    named = await ctx.queues.require_queue(req.queue) if req.queue else None
    for ref in [named] if named else await ctx.queues.queues():
        await ctx.queues.promote_due(ref.full)
    result = await ctx.drain.drain(
        named.name if named else None,  # the app knows its queues by their BullMQ names
        max_duration_ms=req.max_duration_ms,
        max_jobs=req.max_jobs,
        concurrency=req.concurrency,
    )
    return DrainReply(queue=req.queue, result=result)


register(
    Command(
        name="drain",
        usage=USAGE,
        summary="call the app's drain endpoint now; per-queue results",
        role=Role.OPERATOR,
        parse=parse,
        run=run,
        examples=("drain", "drain batch-jobs --max-duration 2m --max-jobs 500"),
        parser=parser,
    )
)
