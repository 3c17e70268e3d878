"""The shared handle every adapter module works through: one Redis client, our scripts,
the DLQ naming, and PyPI bullmq Queue objects bound to the same client. Queues are named by
`QueueRef` (prefix and name), so one store reaches queues under any number of prefixes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from bot.queues.backend import Checkpoint, no_checkpoint
from bot.queues.bullmq.scripts import Scripts
from bot.queues.keys import QueueRef

__all__ = ["Checkpoint", "QueueStore", "no_checkpoint"]


@dataclass
class QueueStore:
    redis: Redis
    dlq_suffix: str = "-dlq"
    scripts: Scripts = field(init=False)
    _bullmq: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.scripts = Scripts.register(self.redis)

    def dlq(self, queue: QueueRef) -> QueueRef:
        """`<base>-dlq`: the dead-letter queue beside `queue`, under the same prefix."""
        return queue.with_suffix(self.dlq_suffix)

    def bullmq(self, queue: QueueRef) -> Any:
        """A PyPI bullmq Queue on our client (cached: each one registers ~40 scripts)."""
        found = self._bullmq.get(queue.full)
        if found is None:
            from bullmq import Queue  # here: PyPI bullmq costs any CLI run ~50 ms at import

            found = Queue(queue.name, {"prefix": queue.prefix, "connection": self.redis})
            self._bullmq[queue.full] = found
        return found
