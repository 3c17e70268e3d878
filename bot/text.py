"""Plural-aware counts for every reply: "1 job", "2 jobs", "1 batch", "3 batches"."""

from __future__ import annotations


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
