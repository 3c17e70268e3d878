"""`help`: every command with its usage, role and an example; `help COMMAND` (and
`COMMAND --help` in every transport) one command's usage, arguments and examples."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from bot.errors import UsageError
from bot.roles import Role
from commands.context import CommandContext
from commands.parsing import Request, WordParser, parse_words
from commands.registry import Command, all_commands, family, register, resolve
from commands.reply import Reply
from commands.view import Block, Fields, Heading, Text

HELP_WORDS = ("-h", "--help")
JSON_FLAG = ("--json", "in a terminal or the shell: print one JSON document instead of text")
YES_FLAG = ("--yes", "in a terminal or the shell: run without asking to confirm first")
ENV_FLAG = (
    "--env NAME",
    "with several Redis deployments (QUEUEOPS_REDIS_URLS): run in that one "
    "(a snapshot without it shows each)",
)


class HelpRequest(Request):
    topic: tuple[str, ...] = ()


class FlagHelp(BaseModel):
    flag: str
    about: str


class CommandHelp(BaseModel):
    name: str
    usage: str
    summary: str
    role: str
    flags: list[FlagHelp]
    examples: list[str]


def describe(command: Command) -> CommandHelp:
    """A command's help, from its registry entry and its parser's help strings."""
    rows = command.parser().arguments() if command.parser is not None else []
    rows.append(JSON_FLAG)
    if command.name != "help":
        rows.append(ENV_FLAG)
    if command.preview is not None:
        rows.append(YES_FLAG)
    return CommandHelp(
        name=command.name,
        usage=command.usage,
        summary=command.summary,
        role=command.role.label,
        flags=[FlagHelp(flag=f, about=a) for f, a in rows],
        examples=list(command.examples),
    )


class HelpReply(Reply):
    commands: list[CommandHelp]

    def view(self) -> list[Block]:
        blocks: list[Block] = [
            Text(
                text="queueops: BullMQ operations from Slack or a terminal. Commands "
                "(help COMMAND, or COMMAND --help, for its arguments; --env NAME runs one in "
                "an environment of QUEUEOPS_REDIS_URLS):"
            )
        ]
        for c in self.commands:
            blocks.append(Heading(text=f"{c.usage}    ({c.role}) {c.summary}"))
            blocks.append(Fields(items=[("e.g.", e) for e in c.examples]))
        return blocks


class CommandHelpReply(Reply):
    """One command's help (or a family's: `help cron`); `prefix` is how the transport
    starts a command line ("queueops " in a terminal, "/queue " in Slack)."""

    commands: list[CommandHelp]
    prefix: str = Field("", exclude=True)

    def view(self) -> list[Block]:
        blocks: list[Block] = []
        for c in self.commands:
            if blocks:
                blocks.append(Text(text=""))
            blocks += [
                Text(text=f"usage: {self.prefix}{c.usage}"),
                Text(text=f"{c.summary} ({c.role} role)"),
                Heading(text="arguments:"),
                Fields(items=[(f.flag, f.about) for f in c.flags]),
            ]
            if c.examples:
                blocks.append(Text(text="e.g."))
                blocks += [Text(text=f"  {self.prefix}{e}") for e in c.examples]
        return blocks


def help_for(words: Sequence[str], *, prefix: str = "") -> CommandHelpReply:
    """The help for the command (or family: `cron`) named by `words`; extra words, such as
    a queue name after `pause`, are ignored. UsageError (with a guess) for an unknown one."""
    if not words:
        raise UsageError("help COMMAND needs a command name; try 'help'")
    members = family(words[0])
    try:
        command, _ = resolve(words)
    except UsageError:
        if not members:
            raise
        return CommandHelpReply(commands=[describe(c) for c in members], prefix=prefix)
    return CommandHelpReply(commands=[describe(command)], prefix=prefix)


def parser() -> WordParser:
    parser = WordParser("help", "help [COMMAND]")
    parser.add_argument(
        "topic", metavar="COMMAND", nargs="*", help="a command: its arguments and examples"
    )
    return parser


def parse(words: Sequence[str]) -> HelpRequest:
    return parse_words(HelpRequest, parser(), words)


async def run(req: HelpRequest, ctx: CommandContext) -> Reply:
    if req.topic:
        return help_for(req.topic)
    return HelpReply(commands=[describe(c) for c in all_commands()])


register(
    Command(
        name="help",
        usage="help [COMMAND]",
        summary="this list, with examples; help COMMAND for one command's arguments",
        role=Role.ANYONE,
        parse=parse,
        run=run,
        examples=("help", "help quarantine"),
        parser=parser,
    )
)
