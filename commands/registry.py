"""The command registry: name -> parser, handler, role. Transports look commands up here.

A command is registered by its module with `register(Command(...))`; multi-word names
("dlq replay") are resolved by the longest match of the leading words.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.errors import UsageError
from bot.roles import Role
from commands.context import CommandContext
from commands.reply import Reply


def never(request: Any) -> bool:
    return False


@dataclass(frozen=True)
class Command:
    """One command: how to parse its words, who may run it, and what it does.

    `confirm(request)` says whether this request needs a person to confirm it first (bulk
    quarantine, replay); `preview` then shows what would happen, changing nothing. Chat
    transports (Slack, the shell) ask; the terminal CLI runs at once unless the command
    is marked `confirm_in_terminal` (deployment changes).
    """

    name: str
    usage: str
    summary: str
    role: Role
    parse: Callable[[Sequence[str]], Any]
    run: Callable[[Any, CommandContext], Awaitable[Reply]]
    examples: tuple[str, ...] = field(default_factory=tuple)
    confirm: Callable[[Any], bool] = never
    preview: Callable[[Any, CommandContext], Awaitable[Reply]] | None = None
    confirm_in_terminal: bool = False


_COMMANDS: dict[str, Command] = {}


def register(command: Command) -> Command:
    if command.name in _COMMANDS:
        raise ValueError(f"command '{command.name}' registered twice")
    _COMMANDS[command.name] = command
    return command


def all_commands() -> list[Command]:
    _load_families()
    return list(_COMMANDS.values())


def resolve(words: Sequence[str]) -> tuple[Command, list[str]]:
    """The command named by the leading words, and the words left for its parser."""
    _load_families()
    if not words:
        raise UsageError("no command given; try 'help'")
    for take in (2, 1):
        name = " ".join(words[:take]).lower()
        if len(words) >= take and name in _COMMANDS:
            return _COMMANDS[name], list(words[take:])
    families = sorted({n.split()[0] for n in _COMMANDS})
    if words[0].lower() in families:
        subs = sorted(n for n in _COMMANDS if n.startswith(words[0].lower() + " "))
        raise UsageError(f"'{' '.join(words[:2])}' is not a command; try {', '.join(subs)}")
    raise UsageError(f"unknown command '{words[0]}'; try 'help' ({', '.join(families)})")


def _load_families() -> None:
    """Import every command family once so that each registers itself."""
    # The order of these imports is the order `help` lists the commands in.
    from commands import snapshot  # noqa: F401, I001
    from commands import quarantine  # noqa: F401
    from commands import dlq  # noqa: F401
    from commands import control  # noqa: F401
    from commands import drain  # noqa: F401
    from commands import cron  # noqa: F401
    from commands import budget  # noqa: F401
    from commands import mode  # noqa: F401
    from commands import rotate  # noqa: F401
    from commands import help  # noqa: F401
