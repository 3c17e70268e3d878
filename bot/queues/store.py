"""The shared handle every adapter module works through: one Redis client, our scripts,
the key prefix, the DLQ naming, and PyPI bullmq Queue objects bound to the same client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from bot.queues.keys import QueueKeys
from bot.queues.scripts import Scripts

Checkpoint = Callable[[str], Awaitable[None]]
"""Called after each step of a multi-step operation with the step's name. Production passes
none; the fault-injection tests raise from it to stop an operation between two steps."""


async def no_checkpoint(step: str) -> None:
    """The default checkpoint: carry on."""


@dataclass
class QueueStore:
    redis: Redis
    prefix: str = "bull"
    dlq_suffix: str = "-dlq"
    scripts: Scripts = field(init=False)
    _bullmq: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.scripts = Scripts.register(self.redis)

    def keys(self, queue: str) -> QueueKeys:
        return QueueKeys(self.prefix, queue)

    def dlq_name(self, queue: str) -> str:
        return f"{queue}{self.dlq_suffix}"

    def dlq_keys(self, queue: str) -> QueueKeys:
        return QueueKeys(self.prefix, self.dlq_name(queue))

    def is_dlq(self, name: str) -> bool:
        return name.endswith(self.dlq_suffix)

    def bullmq(self, queue: str) -> Any:
        """A PyPI bullmq Queue on our client (cached: each one registers ~40 scripts)."""
        found = self._bullmq.get(queue)
        if found is None:
            from bullmq import Queue  # here: PyPI bullmq costs any CLI run ~50 ms at import

            found = Queue(queue, {"prefix": self.prefix, "connection": self.redis})
            self._bullmq[queue] = found
        return found
