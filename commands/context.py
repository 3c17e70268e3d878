"""What a command runs with: the queues, the configuration, and who is asking."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Settings
from bot.queues.service import QueueService
from bot.roles import Role


@dataclass(frozen=True)
class CommandContext:
    queues: QueueService
    settings: Settings
    actor: str
    """Who, for the audit trail and a quarantine's `qo.by`: "cli:alice", "slack:U123"."""
    role: Role = Role.ADMIN
    """What the actor may do; the terminal is trusted (it holds the Redis credentials)."""
