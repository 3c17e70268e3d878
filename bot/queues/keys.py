"""Key names of a BullMQ v5 queue: `<prefix>:<queue>:<suffix>` and `<prefix>:<queue>:<id>`."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class QueueKeys:
    """Where one queue lives in Redis."""

    prefix: str
    name: str

    @property
    def base(self) -> str:
        """`bull:batch-jobs:` — BullMQ's own `keys['']`, to which a job id is appended."""
        return f"{self.prefix}:{self.name}:"

    def key(self, suffix: str) -> str:
        return f"{self.base}{suffix}"

    def job(self, job_id: str) -> str:
        return f"{self.base}{job_id}"
