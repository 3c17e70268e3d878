"""Slash-command text to words: Slack escapes &, < and > in command text; undo that, then
split the line like a shell (commands.parsing.split_line)."""

from __future__ import annotations

from commands.parsing import split_line


def split_words(text: str) -> list[str]:
    return split_line(text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
