"""Words to a validated request: argparse for the shape, pydantic for the values.

Slack's `/queue <words>` and the CLI's `queueops <words>` go through the same parser, so
both take exactly the same words. Every mistake becomes one UsageError line.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError

from bot.config import validate_queue_name
from bot.durations import check_cadence_ms, parse_duration_ms
from bot.errors import UsageError
from bot.patterns import PatternError, compile_user_pattern

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
    """argparse that raises UsageError instead of printing and exiting."""

    def __init__(self, command: str, usage: str) -> None:
        super().__init__(prog=command, usage=usage, add_help=False, exit_on_error=False)
        self.command_usage = usage

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (usage: {self.command_usage})")


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


QueueName = Annotated[str, AfterValidator(validate_queue_name)]
Cadence = Annotated[int, AfterValidator(check_cadence_ms)]
"""A tick cadence in ms, 1s to 1d (bot.durations)."""
JobId = Annotated[str, AfterValidator(_job_id)]
Regex = Annotated[str, AfterValidator(_regex)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class Request(BaseModel):
    """Base of command requests: frozen, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _field_flag(loc: tuple[Any, ...]) -> str:
    """The words a person typed for a field: QUEUE, JOB_ID, --every (field every_ms)."""
    name = str(loc[0]) if loc else "value"
    if name in ("queue", "queues", "job_id"):
        return name.removesuffix("s").upper()
    return "--" + name.removesuffix("_ms").replace("_", "-")


def parse_words(model: type[Req], parser: WordParser, words: Sequence[str]) -> Req:
    """Parse `words` with `parser`, then validate into `model`; UsageError on any problem."""
    try:
        namespace = parser.parse_args(list(words))
    except argparse.ArgumentError as err:
        raise UsageError(f"{err} (usage: {parser.command_usage})") from None
    values = {k: v for k, v in vars(namespace).items() if v is not None}
    try:
        return model.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        loc = tuple(first.get("loc", ()))
        if not loc:
            raise UsageError(f"{message} (usage: {parser.command_usage})") from None
        raise UsageError(f"{_field_flag(loc)}: {message}") from None
