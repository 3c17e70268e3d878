"""`help`: every command with its usage, role and an example."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from bot.roles import Role
from commands.context import CommandContext
from commands.parsing import Request, WordParser, parse_words
from commands.registry import Command, all_commands, register
from commands.reply import Reply
from commands.view import Block, Fields, Heading, Text


class HelpRequest(Request):
    pass


class CommandHelp(BaseModel):
    name: str
    usage: str
    summary: str
    role: str
    examples: list[str]


class HelpReply(Reply):
    commands: list[CommandHelp]

    def view(self) -> list[Block]:
        blocks: list[Block] = [
            Text(text="queueops: BullMQ operations from Slack or a terminal. Commands:")
        ]
        for c in self.commands:
            blocks.append(Heading(text=f"{c.usage}    ({c.role}) {c.summary}"))
            blocks.append(Fields(items=[("e.g.", e) for e in c.examples]))
        return blocks


def parse(words: Sequence[str]) -> HelpRequest:
    return parse_words(HelpRequest, WordParser("help", "help"), words)


async def run(req: HelpRequest, ctx: CommandContext) -> HelpReply:
    return HelpReply(
        commands=[
            CommandHelp(
                name=c.name,
                usage=c.usage,
                summary=c.summary,
                role=c.role.label,
                examples=list(c.examples),
            )
            for c in all_commands()
        ]
    )


register(
    Command(
        name="help",
        usage="help",
        summary="this list, with examples",
        role=Role.ANYONE,
        parse=parse,
        run=run,
        examples=("help",),
    )
)
