"""Words a person reads: plural-aware counts ("1 job", "3 batches") for every reply, and
pydantic's errors as plain sentences for command words and configuration alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def plural_of(word: str) -> str:
    """The English plural of the last word of `word` ("failed job" -> "failed jobs")."""
    head, _, last = word.rpartition(" ")
    if last.endswith(("s", "x", "z", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and last[-2:-1] not in tuple("aeiou"):
        last = last[:-1] + "ies"
    else:
        last += "s"
    return f"{head} {last}" if head else last


def plural(count: int, word: str, many: str | None = None) -> str:
    """`count` and the word in the right number, with thousands separated: "1 job",
    "1,500 jobs"; `many` gives an irregular plural."""
    return f"{count:,} {word if count == 1 else (many or plural_of(word))}"


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _got(value: Any) -> str:
    return f" (got {_number(value)})" if isinstance(value, int | float | str) else ""


def plain_pydantic_message(error: Mapping[str, Any]) -> str:
    """One pydantic error as a sentence: "must be at least 1 (got 0)", not "Input should
    be greater than or equal to 1"."""
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "greater_than_equal":
        return f"must be at least {_number(ctx.get('ge'))}{_got(value)}"
    if kind == "greater_than":
        return f"must be more than {_number(ctx.get('gt'))}{_got(value)}"
    if kind == "less_than_equal":
        return f"must be at most {_number(ctx.get('le'))}{_got(value)}"
    if kind == "less_than":
        return f"must be less than {_number(ctx.get('lt'))}{_got(value)}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{str(value)[:40]!r} is not a whole number"
    if kind in ("float_parsing", "float_type", "finite_number"):
        return f"{str(value)[:40]!r} is not a number"
    if kind in ("bool_parsing", "bool_type"):
        return f"{str(value)[:40]!r} is not yes or no"
    if kind == "string_too_short":
        least = ctx.get("min_length", 1)
        return "must not be empty" if least == 1 else f"must be at least {least} characters"
    if kind == "string_too_long":
        return f"is too long (at most {ctx.get('max_length')} characters)"
    if kind in ("string_type", "string_pattern_mismatch"):
        return f"{str(value)[:40]!r} is not accepted here"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not an option of this command"
    if kind == "literal_error":
        return f"must be {ctx.get('expected', 'one of the listed values')}"
    message = str(error.get("msg", "is not valid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message
