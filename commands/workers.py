"""`workers [QUEUE]`: the npm bullmq Workers connected, per queue (address, age, idle).

Seed 002's cause #1 ("consumer outage") and seed 004's "jobs stuck in waiting: worker
offline" are one question: is anything connected to take the jobs? Redis knows, by the
connection names npm bullmq gives its Workers (bot/queues/bullmq/workers.py); one CLIENT
LIST answers for every queue. A Redis that refuses CLIENT LIST makes the answer "unknown",
said once, not an error: the person learns why there is no answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.durations import humanize_age_ms
from bot.queues.models import QueueWorkers
from bot.roles import Role
from bot.text import plural
from commands.context import CommandContext
from commands.parsing import QueueName, Request, WordParser, parse_words
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Block, Heading, Mark, Note, Row, Table

USAGE = "workers [QUEUE]"
UNKNOWN = "workers: unknown (this Redis refuses CLIENT LIST, so connected workers cannot be seen)"


class WorkersRequest(Request):
    queue: QueueName | None = None


class WorkersReply(Reply):
    queues: list[QueueWorkers]

    @property
    def unknown(self) -> bool:
        return any(q.workers is None for q in self.queues)

    def data(self) -> dict[str, Any]:
        return {
            "queues": [q.model_dump(mode="json", by_alias=True) for q in self.queues],
            "known": not self.unknown,
        }

    def view(self) -> list[Block]:
        if not self.queues:
            return [Note(mark=Mark.INFO, text="no queues found (set QUEUEOPS_QUEUES?)")]
        if self.unknown:
            return [Note(mark=Mark.WARN, text=UNKNOWN)]
        blocks: list[Block] = [
            Table(
                columns=["queue", "workers"],
                rows=[
                    Row(
                        mark=Mark.HEALTHY if q.workers else Mark.WARN,
                        cells=[q.shown, str(len(q.workers or []))],
                    )
                    for q in self.queues
                ],
            )
        ]
        for q in self.queues:
            if not q.workers:
                continue
            blocks += [
                Heading(text=f"{q.shown}: {plural(len(q.workers), 'worker')}"),
                Table(
                    columns=["address", "name", "connected", "idle", "last command"],
                    rows=[
                        Row(
                            cells=[
                                w.address + (f" ({w.node})" if w.node else ""),
                                w.worker_name or "-",
                                humanize_age_ms(w.age_s * 1000),
                                humanize_age_ms(w.idle_s * 1000),
                                w.last_command or "-",
                            ]
                        )
                        for w in q.workers
                    ],
                ),
            ]
        return blocks


def parser() -> WordParser:
    parser = WordParser("workers", USAGE)
    parser.add_argument(
        "queue", metavar="QUEUE", nargs="?", help="the queue (default: every BullMQ queue)"
    )
    return parser


def parse(words: Sequence[str]) -> WorkersRequest:
    return parse_words(WorkersRequest, parser(), words)


async def run(req: WorkersRequest, ctx: CommandContext) -> WorkersReply:
    return WorkersReply(queues=await ctx.queues.workers(req.queue))


register(
    Command(
        name="workers",
        usage=USAGE,
        summary="the npm bullmq Workers connected per queue: address, age, idle",
        role=Role.VIEWER,
        parse=parse,
        run=run,
        examples=("workers", "workers batch-jobs"),
        parser=parser,
    )
)
