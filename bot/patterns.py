"""User-supplied regexes (`quarantine --failed-matching`): compiled and matched here only.

Python's `re` backtracks: `(a+)+$` against forty `a`s and a `!` runs for minutes and, on
the event loop, freezes `serve` (health checks, alerts, Slack acks, the cron, SIGTERM).
So a user's pattern never reaches `re`: it is compiled by RE2 (google-re2), whose matching
time is linear in the text, and the texts are matched in a worker thread under a time bound,
so even a large page of long failure reasons cannot hold the loop. RE2 refuses what it
cannot run in linear time (backreferences, lookaround); that is one clear line too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.errors import OperationFailed, UsageError

if TYPE_CHECKING:
    import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints

MAX_PATTERN_CHARS = 500
MATCH_CHARS = 2000
"""Only the first MATCH_CHARS of a text are matched: failure reasons can be megabytes."""
MATCH_BOUND_S = 0.5
"""Time allowed to match one batch of texts (a page of up to 500 failure reasons). RE2
takes microseconds per reason for any sensible pattern, so only a pathological one hits it."""

_UNSUPPORTED = ("invalid perl operator", "invalid escape sequence")
_REGEX_SYNTAX = frozenset("\\.^$|?*+()[]{}")
"""Characters that make a pattern more than plain text under RE2's syntax."""


class PatternError(UsageError):
    """The pattern cannot be compiled, or uses what a linear-time engine cannot run."""


class PatternTooSlow(OperationFailed):
    """Matching took longer than the bound; the caller moved nothing (or says how much)."""


def _options() -> re2.Options:
    import re2

    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern to stderr
    return options


@dataclass(frozen=True)
class UserPattern:
    """A user's regex, compiled by RE2. `source` is what the user typed."""

    source: str
    _compiled: re2._Regexp

    @property
    def literal(self) -> str | None:
        """The pattern itself when it is plain text (no regex syntax at all), else None:
        a plain text is matched as a substring, which Redis can do inside a bulk move's
        script (lua/quarantine_failed.lua) as the same yes/no RE2 would give."""
        if self.source and not _REGEX_SYNTAX.intersection(self.source):
            return self.source
        return None

    def search(self, text: str) -> bool:
        """Whether the pattern occurs in the first MATCH_CHARS of `text` (linear time)."""
        # As UTF-8 bytes, which RE2 matches anyway: given a str, google-re2 also maps
        # every match's byte offsets back to characters, 3x the time of the search itself
        # (0.6 s for a bulk move's 100,000 reasons, against 0.2 s).
        return self._compiled.search(text[:MATCH_CHARS].encode()) is not None

    async def matching(self, texts: Sequence[str], *, bound_s: float | None = None) -> list[bool]:
        """`search` over `texts` in a worker thread, stopping once `bound_s` (MATCH_BOUND_S
        by default) has passed.

        Raises PatternTooSlow over the bound. The thread checks the deadline between texts,
        and each text costs at most linear time, so the thread also stops soon after."""
        bound_s = MATCH_BOUND_S if bound_s is None else bound_s
        deadline = time.monotonic() + bound_s
        return await asyncio.to_thread(self._match_all, texts, deadline, bound_s)

    def _match_all(self, texts: Sequence[str], deadline: float, bound_s: float) -> list[bool]:
        found = []
        for text in texts:
            if time.monotonic() > deadline:
                raise PatternTooSlow(
                    f"pattern too slow: /{self.source}/ took over {bound_s:g} s on "
                    f"{len(texts)} failure reasons; simplify it (a literal word is fastest)"
                )
            found.append(self.search(text))
        return found


def compile_user_pattern(source: str) -> UserPattern:
    """Compile a user's regex with RE2, or raise PatternError with one line saying why."""
    if len(source) > MAX_PATTERN_CHARS:
        raise PatternError(f"the pattern is longer than {MAX_PATTERN_CHARS} characters")
    # Imported here: only a pattern needs RE2, and every command's parser imports this module.
    import re2

    try:
        compiled = re2.compile(source, _options())
    except re2.error as err:
        detail = err.args[0] if err.args else err
        reason = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
        hint = ""
        if reason.startswith(_UNSUPPORTED):
            hint = (
                "; backreferences and lookaround are not supported (patterns run on RE2, "
                "in linear time, so one pattern cannot stall the bot)"
            )
        raise PatternError(f"'{source}' is not a valid regex: {reason}{hint}") from None
    return UserPattern(source=source, _compiled=compiled)
