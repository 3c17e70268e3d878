"""Words to a validated request: argparse for the shape, pydantic for the values.

Slack's `/queue <words>` and the CLI's `queueops <words>` go through the same parser, so
both take exactly the same words. Every mistake becomes one UsageError line.
"""

from __future__ import annotations

import argparse
import difflib
import re
import shlex
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError

from bot.config import validate_queue_word
from bot.durations import check_cadence_ms, parse_duration_ms
from bot.errors import UsageError
from bot.patterns import PatternError, compile_user_pattern
from bot.text import plain_pydantic_message

Req = TypeVar("Req", bound=BaseModel)

# Chat clients turn straight quotes into curly ones; a person means the straight ones.
_CURLY_QUOTES = str.maketrans(
    {"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'"}
)


def split_line(text: str) -> list[str]:
    """A typed line to words, the way a shell splits them (`--reason "bad pdf"` is 2 words)."""
    try:
        return shlex.split(text.translate(_CURLY_QUOTES))
    except ValueError as err:
        raise UsageError(f"could not read the words: {err} (check the quotes)") from None


class WordParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing and exiting, in the words a
    person typed (QUEUE, --every), never argparse's or pydantic's internal names.

    Each argument's `help=` is what `COMMAND --help` shows for it (commands/help.py)."""

    def __init__(self, command: str, usage: str) -> None:
        super().__init__(prog=command, usage=usage, add_help=False, exit_on_error=False)
        self.command_usage = usage

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{plain_argparse_message(message, self)} (usage: {self.command_usage})")

    def option_names(self) -> list[str]:
        return [o for a in self._actions for o in a.option_strings]

    def arguments(self) -> list[tuple[str, str]]:
        """(how it is typed, what it does) for each argument: QUEUE, --limit N, --deep."""
        rows: list[tuple[str, str]] = []
        for action in self._actions:
            if action.help == argparse.SUPPRESS:
                continue
            rows.append((argument_label(action), action.help or ""))
        return rows


def argument_label(action: argparse.Action) -> str:
    """QUEUE for a positional, `--limit N` for an option taking a value, `--deep` for a flag."""
    metavar = action.metavar if isinstance(action.metavar, str) else None
    if not action.option_strings:
        label = metavar or action.dest.upper()
        return f"[{label} ...]" if action.nargs == "*" else label
    flag = max(action.option_strings, key=len)
    if action.nargs == 0:
        return flag
    return f"{flag} {metavar or flag.lstrip('-').upper()}"


_ARGUMENT = re.compile(r"^argument ([^:]+): ")


def _name_in_words(name: str, parser: argparse.ArgumentParser | None) -> str:
    """argparse names an argument by its dest or metavar; say it as it is typed."""
    if parser is not None:
        for action in parser._actions:
            if name in (action.dest, action.metavar, "/".join(action.option_strings)):
                return argument_label(action).split()[0].strip("[")
    return name.split("/")[-1]


def plain_argparse_message(message: str, parser: argparse.ArgumentParser | None = None) -> str:
    """argparse's message in a person's words: 'missing QUEUE', '--limit needs a value'..."""
    if message.startswith("the following arguments are required: "):
        names = message.removeprefix("the following arguments are required: ").split(", ")
        return "missing " + " and ".join(_name_in_words(n, parser) for n in names)
    if message.startswith("unrecognized arguments: "):
        extra = message.removeprefix("unrecognized arguments: ")
        first = extra.split()[0] if extra.split() else extra
        if first.startswith("-") and parser is not None:
            known = [o for a in parser._actions for o in a.option_strings]
            near = difflib.get_close_matches(first.split("=")[0], known, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            return f"unknown option {first}{hint}"
        return f"unexpected words: {extra}"
    found = _ARGUMENT.match(message)
    if found is None:
        return message
    name = _name_in_words(found.group(1), parser)
    rest = message[found.end() :]
    if rest == "expected one argument":
        return f"{name} needs a value"
    if rest.startswith("invalid choice: "):
        choice = re.match(r"invalid choice: (.+?) \(choose from (.+)\)$", rest)
        if choice:
            options = ", ".join(o.strip().strip("'") for o in choice.group(2).split(","))
            return f"{name}: {choice.group(1)} is not one of {options}"
    invalid = re.match(r"invalid (\w+) value: (.+)$", rest)
    if invalid:
        return f"{name}: {invalid.group(2)} is not a valid value"
    return f"{name}: {rest}"


def _job_id(value: str) -> str:
    if not value or len(value) > 255 or any(c.isspace() for c in value) or ":" in value:
        raise ValueError(f"'{value}' is not a job id")
    return value


def _regex(value: str) -> str:
    try:
        compile_user_pattern(value)  # RE2, as the match will be: see bot/patterns.py
    except PatternError as err:
        raise ValueError(str(err)) from None
    return value


def whole_number(text: str) -> int:
    """argparse `type=` for a count: "'ten' is not a whole number", not "invalid int value"."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None


def number(text: str) -> float:
    """argparse `type=` for a number such as a percentage."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number")
    return value


def duration_argument(text: str) -> int:
    """argparse `type=` for a duration: its own message, not "invalid duration value"."""
    try:
        return parse_duration_ms(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def cadence_argument(text: str) -> int:
    """argparse `type=` for a tick cadence: a duration from 1s to 1d."""
    try:
        return check_cadence_ms(parse_duration_ms(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


QueueName = Annotated[str, AfterValidator(validate_queue_word)]
Cadence = Annotated[int, AfterValidator(check_cadence_ms)]
"""A tick cadence in ms, 1s to 1d (bot.durations)."""
JobId = Annotated[str, AfterValidator(_job_id)]
Regex = Annotated[str, AfterValidator(_regex)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class Request(BaseModel):
    """Base of command requests: frozen, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _field_flag(loc: tuple[Any, ...], parser: argparse.ArgumentParser | None = None) -> str:
    """The words a person typed for a field: QUEUE, JOB_ID, --every (field every_ms)."""
    name = str(loc[0]) if loc else "value"
    if parser is not None:
        for action in parser._actions:
            if action.dest == name:
                return argument_label(action).split()[0].strip("[")
    if name in ("queue", "queues", "job_id"):
        return name.removesuffix("s").upper()
    return "--" + name.removesuffix("_ms").replace("_", "-")


def parse_words(model: type[Req], parser: WordParser, words: Sequence[str]) -> Req:
    """Parse `words` with `parser`, then validate into `model`; UsageError on any problem."""
    try:
        namespace = parser.parse_args(list(words))
    except argparse.ArgumentError as err:
        message = plain_argparse_message(str(err), parser)
        raise UsageError(f"{message} (usage: {parser.command_usage})") from None
    values = {k: v for k, v in vars(namespace).items() if v is not None}
    try:
        return model.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        message = plain_pydantic_message(first)
        loc = tuple(first.get("loc", ()))
        if not loc:
            raise UsageError(f"{message} (usage: {parser.command_usage})") from None
        joint = " " if message.startswith("is ") else ": "
        raise UsageError(f"{_field_flag(loc, parser)}{joint}{message}") from None
