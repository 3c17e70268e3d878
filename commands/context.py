"""What a command runs with: the queues, the configuration, and who is asking."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Settings
from bot.drain import DrainClient
from bot.errors import OperationFailed
from bot.queues.service import QueueService
from bot.roles import Role
from commands.incident_desk import IncidentDesk
from scheduler.state import CronState


@dataclass(frozen=True)
class CommandContext:
    queues: QueueService
    settings: Settings
    actor: str
    """Who, for the audit trail and a quarantine's `qo.by`: "cli:alice", "slack:U123"."""
    role: Role = Role.ADMIN
    """What the actor may do; the terminal is trusted (it holds the Redis credentials)."""
    cron: CronState | None = None
    drain: DrainClient | None = None
    """None when DRAIN_URL is not set."""
    incidents: IncidentDesk | None = None
    """The incident desk (declare, lead, severity, update): only where Slack is on
    (`queueops serve` with SLACK_BOT_TOKEN); None in the CLI and the shell."""
    channel: str | None = None
    """The Slack channel the command was typed in: the incident commands act on the
    incident that channel is run for. None outside Slack."""

    @property
    def instant_drains(self) -> bool:
        """Instant drains are configured: DRAIN_INSTANT on, and an app to drain."""
        return self.settings.drain_instant and self.drain is not None

    def cron_state(self) -> CronState:
        """The drain cron's state; every entry point gives one (bot.dispatch)."""
        if self.cron is None:
            raise OperationFailed("the drain cron's state is not available here")
        return self.cron
