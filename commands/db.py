"""`db init-dlq`: create the DB queue's dead-letter table, only when a person asks.

queueops never creates a table by itself (a migration tool, or a DBA, may own the
schema); this is the one command that does, and it says which of the job table's
recommended indexes are missing rather than building them on a busy table.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.queues.postgres.schema import DlqSetup
from bot.roles import Role
from commands.context import CommandContext
from commands.parsing import Request, WordParser, parse_words
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Block, Code, Mark, Note

USAGE = "db init-dlq"


class InitDlqRequest(Request):
    pass


class InitDlqReply(Reply):
    setup: DlqSetup

    def view(self) -> list[Block]:
        s = self.setup
        if s.created:
            text = f"created the DLQ table {s.table}"
        elif s.replayed_at:
            text = f"the DLQ table {s.table} exists; nothing changed"
        else:
            text = (
                f"the DLQ table {s.table} exists, without replayed_at: a replay deletes its "
                "DLQ row (add a nullable replayed_at timestamptz to keep them)"
            )
        blocks: list[Block] = [Note(mark=Mark.OK, text=text)]
        if s.missing_indexes:
            blocks += [
                Note(
                    mark=Mark.WARN,
                    text="the job table lacks the indexes the snapshot and the tick read; "
                    "at a million rows each costs a full scan without them:",
                ),
                Code(text="\n".join(s.missing_indexes)),
            ]
        return blocks


def parser() -> WordParser:
    return WordParser("db init-dlq", USAGE)


def parse(words: Sequence[str]) -> InitDlqRequest:
    return parse_words(InitDlqRequest, parser(), words)


async def run(req: InitDlqRequest, ctx: CommandContext) -> InitDlqReply:
    return InitDlqReply(setup=await ctx.queues.init_dlq())


register(
    Command(
        name="db init-dlq",
        usage=USAGE,
        summary="create the DB queue's DLQ table (QUEUE_JOBS_DLQ_TABLE) if it is missing",
        role=Role.ADMIN,
        parse=parse,
        run=run,
        examples=("db init-dlq",),
        parser=parser,
    )
)
