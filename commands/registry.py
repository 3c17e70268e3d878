"""The command registry: name -> parser, handler, role. Transports look commands up here.

A command is registered by its module with `register(Command(...))`; multi-word names
("dlq replay") are resolved by the longest match of the leading words.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.errors import UsageError

if TYPE_CHECKING:
    from bot.roles import Role
    from commands.context import CommandContext
    from commands.parsing import WordParser
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
    parser: Callable[[], WordParser] | None = None
    """The command's argparse parser: its arguments' help strings are what `--help` shows."""


_COMMANDS: dict[str, Command] = {}


def register(command: Command) -> Command:
    if command.name in _COMMANDS:
        raise ValueError(f"command '{command.name}' registered twice")
    _COMMANDS[command.name] = command
    return command


def all_commands() -> list[Command]:
    """Every command, in the order `help` lists them (the order of FAMILIES)."""
    _load_families()
    return sorted(_COMMANDS.values(), key=_listing_place)


def resolve(words: Sequence[str]) -> tuple[Command, list[str]]:
    """The command named by the leading words, and the words left for its parser."""
    if not words:
        raise UsageError("no command given; try 'help'")
    _load_family(words[0])  # only the module that word names: a CLI run imports no other
    for take in (2, 1):
        name = " ".join(words[:take]).lower()
        if len(words) >= take and name in _COMMANDS:
            return _COMMANDS[name], list(words[take:])
    _load_families()  # not a command: the message names and suggests from all of them
    import difflib  # here: only a mistyped command needs it

    families = sorted({n.split()[0] for n in _COMMANDS})
    first = words[0].lower()
    if first in families:
        subs = sorted(n for n in _COMMANDS if n.startswith(first + " "))
        typed = " ".join(words[:2])
        second = words[1].lower() if len(words) > 1 else ""
        near = difflib.get_close_matches(second, [n.split()[1] for n in subs], n=1)
        if near:
            raise UsageError(f"'{typed}' is not a command; did you mean '{first} {near[0]}'?")
        raise UsageError(f"'{typed}' is not a command; try {', '.join(subs)}")
    near = difflib.get_close_matches(first, sorted({*families, *_COMMANDS}), n=1)
    if near:
        raise UsageError(f"unknown command '{words[0]}'; did you mean '{near[0]}'?")
    raise UsageError(f"unknown command '{words[0]}'; try 'help' ({', '.join(families)})")


def family(word: str) -> list[Command]:
    """The commands whose first word is `word` (`cron` -> cron status, cron history...)."""
    _load_family(word)
    return [c for c in all_loaded() if c.name.split()[0] == word.lower()]


def all_loaded() -> list[Command]:
    """The commands of the families imported so far, in `help`'s order; imports nothing."""
    return sorted(_COMMANDS.values(), key=_listing_place)


# Which module registers the commands whose first word is the key. A CLI run imports only
# the module its command needs (`queueops snapshot` has no use for rotate-token's deployment
# backends); `help`, the shell and Slack see all. The order of the modules here is the order
# `help` lists the commands in. A new command family is added here (tests/test_cli.py checks
# that every registered command is).
FAMILIES: dict[str, str] = {
    "snapshot": "commands.snapshot",
    "quarantine": "commands.quarantine",
    "dlq": "commands.dlq",
    "job": "commands.job",
    # -- failures and find (issue 14) --
    "failures": "commands.find",
    "find": "commands.find",
    "promote": "commands.find",
    "remove": "commands.find",
    "pause": "commands.control",
    "resume": "commands.control",
    "retry": "commands.control",
    # -- queue actions (issue 14) --
    "clean": "commands.queue_actions",
    "empty": "commands.queue_actions",
    "obliterate": "commands.queue_actions",
    "add": "commands.queue_actions",
    "schedulers": "commands.queue_actions",
    # -- workers (issue 14) --
    "workers": "commands.workers",
    "incident": "commands.incident",
    "drain": "commands.drain",
    "cron": "commands.cron",
    "budget": "commands.budget",
    "mode": "commands.mode",
    "db": "commands.db",
    "rotate-token": "commands.rotate",
    "help": "commands.help",
}
_MODULES: tuple[str, ...] = tuple(dict.fromkeys(FAMILIES.values()))


def _listing_place(command: Command) -> int:
    module = FAMILIES.get(command.name.split()[0])
    return _MODULES.index(module) if module in _MODULES else len(_MODULES)


def _load_family(word: str) -> None:
    """Import the module of the commands whose first word is `word` (all, for a word that
    names none), so that it registers itself."""
    module = FAMILIES.get(word.lower())
    if module is None:
        _load_families()
    else:
        importlib.import_module(module)


def _load_families() -> None:
    """Import every command family once so that each registers itself."""
    for module in _MODULES:
        importlib.import_module(module)
