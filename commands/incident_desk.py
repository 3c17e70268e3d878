"""What the `incident` commands need from an incident desk, without knowing Slack.

The commands live below the transports (tests/test_layers.py): they may not import
bot.incidents or bot.slack, yet declaring an incident opens a Slack channel and taking the
lead acknowledges the page. So the commands speak to this small interface, and the Slack
side (bot/incidents/desk.py: SlackIncidentDesk) implements it on top of the incident
channels an alert opens. Where there is no Slack (the CLI, the shell) there is no desk, and
each command says so in one line.
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

Severity = Literal["sev1", "sev2", "sev3"]
"""sev1 is the worst; the same scale the pager and PAGE_SEVERITY use."""


class _Result(BaseModel):
    """camelCase in JSON, like every reply (a command's --json embeds these)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class DeclaredIncident(_Result):
    """The incident a declaration opened: its id and the channel it is run from."""

    incident_id: str
    channel: str
    channel_name: str
    severity: Severity
    already: bool = False
    """True when nothing new was opened: the same message declared again, or a channel
    converted again, answers with the incident it made the first time."""


class LeadChange(_Result):
    """Who leads now, and who led before (None: nobody did; the same person: no change)."""

    incident_id: str
    lead: str
    previous: str | None = None
    note: str | None = None

    @property
    def changed(self) -> bool:
        return self.previous != self.lead


class SeverityChange(_Result):
    """The incident's severity now and before (equal: nothing changed)."""

    incident_id: str
    severity: Severity
    previous: str


class UpdatePosted(_Result):
    """An update was posted in the channel; `mirrored` when it also reached the
    stakeholders' channel (INCIDENT_UPDATES_CHANNEL)."""

    incident_id: str
    mirrored: bool


class FollowupAdded(_Result):
    """A follow-up was added to the incident's postmortem: its number (1 is the first),
    whether the incident is resolved already, and whether the posted postmortem message
    was edited to list it (False: not posted yet; the resolve will list it)."""

    incident_id: str
    number: int
    resolved: bool
    postmortem_updated: bool


class IncidentDesk(Protocol):
    """The moves of an incident a command can make. Every method raises a QueueOpsError
    (bot/errors.py) with one line when it cannot (a resolved incident, an unknown id)."""

    async def declare(
        self, title: str, queue: str | None, severity: Severity, actor: str
    ) -> DeclaredIncident:
        """Open an incident channel exactly as an alert does."""
        ...

    async def convert(
        self, channel: str, title: str | None, queue: str | None, severity: Severity, actor: str
    ) -> DeclaredIncident:
        """Make `channel` (where people already are) the incident's channel: the status
        message, topic, checklist and page as a declaration gives, in that channel. The
        title defaults to the channel's name."""
        ...

    async def incident_of_channel(self, channel: str) -> str | None:
        """The open or resolved incident run from `channel`, if any."""
        ...

    async def set_lead(self, iid: str, user: str, *, by: str, note: str | None) -> LeadChange:
        """`user` (a Slack user id) leads the incident from now on; a hand-over when
        someone led before."""
        ...

    async def set_severity(self, iid: str, severity: Severity, *, by: str) -> SeverityChange:
        """Change the incident's severity (and page when it now reaches PAGE_SEVERITY)."""
        ...

    async def post_update(self, iid: str, text: str, *, by: str) -> UpdatePosted:
        """Post a status update in the channel and to the stakeholders' channel."""
        ...

    async def add_followup(self, iid: str, text: str, *, by: str) -> FollowupAdded:
        """Add a follow-up to the incident's postmortem, open or resolved (postmortems are
        written after): listed in the postmortem message, said in the channel."""
        ...
