"""Where a BullMQ v5 queue lives: `<prefix>:<queue>:<suffix>` and `<prefix>:<queue>:<id>`.

A queue is named by its full key base `PREFIX:NAME`. BullMQ forbids `:` in queue names,
so the last `:` separates the two: `intelliflow:notifications:email` is prefix
`intelliflow:notifications`, queue `email` (a prefix may hold `:`, as npm bullmq allows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The states a job can be in and the key that holds it, in npm bullmq's getJobCounts
# vocabulary (`waiting` lives in the `wait` list).
STATE_KEYS: dict[str, str] = {
    "waiting": "wait",
    "active": "active",
    "delayed": "delayed",
    "prioritized": "prioritized",
    "waiting-children": "waiting-children",
    "paused": "paused",
    "failed": "failed",
    "completed": "completed",
}
COUNT_STATES: tuple[str, ...] = tuple(STATE_KEYS)
DEFAULT_PREFIX = "bull"
"""npm bullmq's default `prefix`: where a short name lives when no prefix is configured."""


def hash_tag(key: str) -> str | None:
    """The part of `key` Redis Cluster hashes, when it has a hash tag: the text between the
    first `{` and the first `}` after it, if not empty (the cluster specification's rule)."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end <= start + 1:
        return None
    return key[start + 1 : end]


@dataclass(frozen=True, order=True)
class QueueRef:
    """One queue: its prefix and name, and how replies show it (`label`, not compared:
    the short name where that is unique among the known queues, else the full name)."""

    prefix: str
    name: str
    label: str = field(default="", compare=False)

    @classmethod
    def parse(cls, full: str) -> QueueRef:
        """`PREFIX:NAME` split at its last `:` (ValueError when there is none)."""
        prefix, sep, name = full.rpartition(":")
        if not sep or not prefix or not name:
            raise ValueError(f"'{full}' is not PREFIX:NAME")
        return cls(prefix, name)

    @property
    def full(self) -> str:
        """`bull:batch-jobs`: unique across prefixes, what `--json` and alerts may carry."""
        return f"{self.prefix}:{self.name}"

    @property
    def shown(self) -> str:
        return self.label or self.name

    @property
    def base(self) -> str:
        """`bull:batch-jobs:` — BullMQ's own `keys['']`, to which a job id is appended."""
        return f"{self.prefix}:{self.name}:"

    def key(self, suffix: str) -> str:
        return f"{self.base}{suffix}"

    def job(self, job_id: str) -> str:
        return f"{self.base}{job_id}"

    def with_suffix(self, suffix: str) -> QueueRef:
        """The queue whose name is this one's plus `suffix`, under the same prefix (the
        DLQ `<base>-dlq`), shown the same way."""
        return QueueRef(self.prefix, self.name + suffix, self.shown + suffix)

    def labelled(self, label: str) -> QueueRef:
        return QueueRef(self.prefix, self.name, label)

    @property
    def slot_tag(self) -> str | None:
        """The hash tag all this queue's keys share on Redis Cluster (`bull` for a `{bull}`
        prefix, `orders` for a `{orders}` queue), or None: then they spread over slots."""
        return hash_tag(self.base)
