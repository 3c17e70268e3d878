"""Failure clusters: failed jobs grouped by what their failures have in common.

A failed queue at 3 a.m. holds thousands of reasons that differ only in what changes from
one job to the next: a port, an address, an id, a timestamp, a quoted value, the line of
the frame. `normalise` replaces those by placeholders so that the same cause reads as the
same text, and `ClusterSet` counts each text with when it was first and last seen, the job
names involved and a sample job. Each cluster has a short key (`cluster_key`: the first 8
hex digits of a SHA-1 of the text) that a person can type into `quarantine QUEUE --cluster
K` or `retry QUEUE --cluster K`; it is the same in every run and on every machine, since
it depends only on the normalised text.

Pure and backend-neutral: no Redis, no I/O; the caller bounds the input (a reason is cut
to REASON_CHARS before anything runs on it) and runs a large batch off the event loop.
Every pattern here is ours and linear on its input (no nested quantifiers), so even a
megabyte reason costs only its first REASON_CHARS characters.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

REASON_CHARS = 2000
"""Characters of a reason looked at (bot.patterns.MATCH_CHARS matches as many)."""
TEXT_CHARS = 300
"""Characters of a normalised text kept: the cluster's face, and what its key hashes."""
KEY_HEX = 8
"""Hex digits of a cluster key: 4 billion keys, so two clusters of one queue share a key
with odds of about one in 400,000 even with a hundred clusters."""

# Order matters: the wider shapes first, so a uuid is not read as hex and numbers, a
# timestamp not as numbers, an address not as four numbers.
_QUOTED = re.compile(r"'([^'\n]{0,200})'|\"([^\"\n]{0,200})\"|`([^`\n]{0,200})`")
_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z_$.]{0,39}")
_ISO_TIME = re.compile(
    r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"
)
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\b")
_EMAIL = re.compile(r"\b[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}\b")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_IPV6 = re.compile(
    r"(?<![\w:])(?:(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}"
    r"|(?:[0-9a-fA-F]{1,4}:){1,6}(?::[0-9a-fA-F]{1,4}){1,6}|::1)(?![\w:])"
)
_HEX_PREFIXED = re.compile(r"\b0x[0-9a-fA-F]+\b")
_HEX_WORD = re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b")
"""A run of 8+ hex digits with at least one digit and one letter (an ObjectId, a commit,
a trace id); a plain word such as 'deadbeef' or 'facade' has no digit and stays."""
_EPOCH = re.compile(r"(?<![\w.])1\d{9}(?:\d{3})?(?:\.\d+)?(?![\w.])")
"""Epoch seconds or milliseconds of 2001-2286 (ten or thirteen digits starting with 1)."""
_NUMBER = re.compile(r"(?<![\w<.])[-+]?\d+(?:\.\d+)?")
"""A number not glued to a word before it: '5000ms' -> '<n>ms'; 'S3', 'utf8' and
'user_123' stay (a name, not a count)."""
_SPACES = re.compile(r"\s+")
_DIGIT = re.compile(r"\d")
_FRAME = re.compile(r"^\s*at\s+\S")


def _quoted(match: re.Match[str]) -> str:
    """A quoted value becomes a placeholder; a quoted identifier (a property, a column, a
    constraint: `reading 'email'`, `relation "users"`) is the cause itself and stays, so
    "undefined (reading 'email')" and "(reading 'id')" are two clusters, not one."""
    quote = match.group(0)[0]
    inner = next(g for g in match.groups() if g is not None)
    if _IDENTIFIER.fullmatch(inner):
        return match.group(0)
    return f"{quote}<str>{quote}"


def _first_frame(lines: Iterable[str]) -> str | None:
    for line in lines:
        if _FRAME.match(line):
            return line.strip()
    return None


def normalise(reason: str | None, stack: str | None = None) -> str:
    """What a failure reason has in common with the same failure of another job (see
    _normalise). Cached: in an incident most reasons repeat exactly, and each costs ten
    regex passes."""
    return _normalise((reason or "")[:REASON_CHARS], stack[:REASON_CHARS] if stack else None)


@functools.lru_cache(maxsize=4096)
def _normalise(text: str, stack: str | None) -> str:
    """The reason's first line (a failedReason can hold a whole stack) and the first `at ...`
    frame of the stack (from the reason's own lines, else from `stack`: the job's latest
    stack trace) with quoted values, timestamps (ISO and epoch), uuids, e-mail and IP
    addresses, hex, and numbers (ports, ids, durations, line:column) replaced."""
    lines = text.splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    frame = _first_frame(lines[1:]) or (_first_frame(stack.splitlines()) if stack else None)
    out = f"{first} | {frame}" if frame else first
    # Each pass only where the character it needs occurs: a pass costs ~3 us even when it
    # finds nothing, and grouping 100,000 reasons runs eleven of them on each.
    if "'" in out or '"' in out or "`" in out:
        out = _QUOTED.sub(_quoted, out)
    if "@" in out:
        out = _EMAIL.sub("<email>", out)
    if ":" in out:
        out = _IPV6.sub("<ip>", out)
    if _DIGIT.search(out):
        if "-" in out:
            out = _ISO_TIME.sub("<time>", out)
            out = _UUID.sub("<uuid>", out)
        if "." in out:
            out = _IPV4.sub("<ip>", out)
        if "0x" in out:
            out = _HEX_PREFIXED.sub("<hex>", out)
        out = _HEX_WORD.sub("<hex>", out)
        out = _EPOCH.sub("<time>", out)
        out = _NUMBER.sub("<n>", out)
    out = _SPACES.sub(" ", out).strip()
    return out[:TEXT_CHARS] or "(no reason)"


def cluster_key(normalised: str) -> str:
    """The short key of a normalised text: stable across runs, machines and versions of
    Python (SHA-1 of its UTF-8), short enough to type."""
    return hashlib.sha1(normalised.encode(), usedforsecurity=False).hexdigest()[:KEY_HEX]


@dataclass
class Cluster:
    """One cause: how many failed jobs it explains, when, in which job names."""

    key: str
    text: str
    count: int = 0
    first_seen_ms: int | None = None
    last_seen_ms: int | None = None
    names: Counter[str] = field(default_factory=Counter)
    sample_id: str = ""
    sample_reason: str = ""

    def add(self, job_id: str, name: str, reason: str, at_ms: int | None) -> None:
        self.count += 1
        self.names[name] += 1
        if at_ms is not None:
            if self.first_seen_ms is None or at_ms < self.first_seen_ms:
                self.first_seen_ms = at_ms
            if self.last_seen_ms is None or at_ms >= self.last_seen_ms:
                self.last_seen_ms = at_ms
                self.sample_id, self.sample_reason = job_id, reason[:REASON_CHARS]
        if not self.sample_id:
            self.sample_id, self.sample_reason = job_id, reason[:REASON_CHARS]


@dataclass
class ClusterSet:
    """Failed jobs added one by one, grouped by their normalised reason. The sample of a
    cluster is its newest job (the one a person wants to open)."""

    clusters: dict[str, Cluster] = field(default_factory=dict)
    jobs: int = 0

    def add(
        self,
        job_id: str,
        name: str,
        reason: str | None,
        at_ms: int | None,
        stack: str | None = None,
    ) -> str:
        """Count one failed job; returns its cluster's key."""
        text = normalise(reason, stack)
        key = cluster_key(text)
        found = self.clusters.get(key)
        if found is None:
            found = self.clusters[key] = Cluster(key=key, text=text)
        found.add(job_id, name, reason or "", at_ms)
        self.jobs += 1
        return key

    def ranked(self) -> list[Cluster]:
        """Largest first; among equals, the most recently seen first."""
        return sorted(
            self.clusters.values(),
            key=lambda c: (-c.count, -(c.last_seen_ms or 0), c.key),
        )
