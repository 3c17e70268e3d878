"""What an incident channel's header shows: the topic and the bookmarks.

The topic is the incident's status in one line, re-set on every change of state, lead,
severity or update (`Incidents.refresh_topic`), so whoever glances at the channel, or at
its name in a search, reads where it stands without scrolling. Slack's topics are plain
text: no mrkdwn and no links, but a user mention (`<@U…>`) is shown as the person's name,
which is how the lead is given. Everything else in the line (the title, the update) is
text people or alerts wrote: its `<…>` sequences become plain words and a written
`@channel`/`@here` loses its `@`, so no topic can ping a channel or a person.

The bookmarks (`IncidentLinks`) are the links a responder needs first: the runbook, the
dashboard of the incident's queues, and, once written, the postmortem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from bot.incidents.paging import severity_of_labels

TOPIC_MAX = 250
"""Slack's limit: conversations.setTopic refuses a longer one (`too_long`)."""
UPDATE_MIN = 12
"""Below this many characters an update is left out of the topic rather than cut to nothing."""
DASHBOARDS_MAX = 3
"""One dashboard bookmark per queue up to this many; an incident on more queues is about
them all, and the first three say where to look."""
QUEUE_PLACEHOLDER = "{queue}"

_LEAD = re.compile(r"[UW][A-Z0-9]{2,}")
# Slack's control sequences: <@U…>, <#C…|name>, <!here>, <!subteam^S…|@team>, <url|label>.
_SEQUENCE = re.compile(r"<([^<>]*)>")
_WRITTEN_PING = re.compile(r"@(?=(?:channel|here|everyone)\b)", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
ANGLES = ("\u2039", "\u203a")
"""Single angle quotes, shown where a stray `<` or `>` was: they read alike and open nothing."""
FULLWIDTH_AT = "\uff20"
"""Shown where a mention was: reads as `@`, and Slack parses no mention from it."""


def _sequence_as_text(found: re.Match[str]) -> str:
    inner = found.group(1)
    target, _, label = inner.partition("|")
    if target.startswith(("@", "!")):
        # A person, a user group or @channel: its name, defanged; never the mention.
        name = label.lstrip("@") or target[1:].split("^")[0]
        return FULLWIDTH_AT + name
    if target.startswith("#"):
        return "#" + (label or target[1:])
    return label or target


def plain(text: str) -> str:
    """Text someone wrote, fit for a topic: on one line, Slack's entities read back as the
    characters they stand for, every control sequence as the words it shows, and no
    `<`, `>` or written `@channel` left that Slack could read as a ping or a link."""
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    text = _SEQUENCE.sub(_sequence_as_text, text)
    text = text.replace("<", ANGLES[0]).replace(">", ANGLES[1])
    text = _WRITTEN_PING.sub(FULLWIDTH_AT, text)
    return _SPACES.sub(" ", text).strip()


def _cut(text: str, room: int) -> str:
    if len(text) <= room:
        return text
    return text[: max(room - 1, 0)].rstrip() + "…"


def topic_line(incident: dict[str, Any]) -> str:
    """`[sev1] FIRING · lead: <@U…> · <latest update> · <title> on <queues>`, at most
    TOPIC_MAX characters. The severity, the state and the lead always fit: the update is
    cut first (left out when too little room is left for it), then the title."""
    severity = incident.get("severity") or severity_of_labels(incident.get("labels") or {})
    state = "RESOLVED" if incident.get("status") == "resolved" else "FIRING"
    lead = str(incident.get("lead") or "")
    who = f"<@{lead}>" if _LEAD.fullmatch(lead) else (plain(lead) or "nobody yet")
    head = f"[{plain(str(severity))}] {state} · lead: {who}"
    queues = ", ".join(plain(str(q)) for q in incident.get("queues") or [])
    what = plain(str(incident.get("title") or "")) + (f" on {queues}" if queues else "")
    update = plain(str(incident.get("update") or ""))
    sep = " · "
    if update:
        room = TOPIC_MAX - len(head) - len(what) - 2 * len(sep)
        if room >= UPDATE_MIN:
            return f"{head}{sep}{_cut(update, room)}{sep}{what}"
    return _cut(f"{head}{sep}{what}", TOPIC_MAX)


@dataclass(frozen=True)
class Bookmark:
    key: str
    """Its field on the incident's hash (`bookmark:<key>`): added once, even after a crash."""
    title: str
    link: str
    emoji: str


@dataclass(frozen=True)
class IncidentLinks:
    """The bookmarks every incident channel gets (INCIDENT_RUNBOOK_URL, INCIDENT_RUNBOOKS,
    GRAFANA_URL; bot/config.py checks them: http(s), no credentials)."""

    runbook_url: str | None = None
    runbooks: Mapping[str, str] = field(default_factory=dict)
    dashboard_url: str | None = None

    def runbook(self, incident: dict[str, Any]) -> str | None:
        """The first of the incident's queues with a runbook of its own, else the alert's
        `runbook` annotation (an http(s) link only: anything else Slack would refuse),
        else the default runbook."""
        for queue in incident.get("queues") or []:
            if queue in self.runbooks:
                return self.runbooks[queue]
        annotated = str(incident.get("runbook") or "")
        if annotated.lower().startswith(("http://", "https://")):
            return annotated
        return self.runbook_url

    def dashboards(self, queues: Sequence[str]) -> list[Bookmark]:
        """GRAFANA_URL with each queue's name (URL-quoted) in place of `{queue}`, one per
        queue up to DASHBOARDS_MAX; a URL without `{queue}` is one bookmark as it is. With
        `{queue}` and no queue (an incident declared without one) there is nothing to fill
        in, and no dashboard."""
        url = self.dashboard_url
        if not url:
            return []
        if QUEUE_PLACEHOLDER not in url:
            return [Bookmark("dashboard", "Dashboard", url, ":chart_with_upwards_trend:")]
        shown = list(queues)[:DASHBOARDS_MAX]
        return [
            Bookmark(
                f"dashboard:{queue}",
                "Dashboard" if len(shown) == 1 else f"Dashboard: {queue}",
                url.replace(QUEUE_PLACEHOLDER, quote(queue, safe="")),
                ":chart_with_upwards_trend:",
            )
            for queue in shown
        ]

    def bookmarks(self, incident: dict[str, Any]) -> list[Bookmark]:
        """What `Incidents.open` adds, in this order (the postmortem comes at resolve)."""
        found = []
        runbook = self.runbook(incident)
        if runbook:
            found.append(Bookmark("runbook", "Runbook", runbook, ":book:"))
        return found + self.dashboards(incident.get("queues") or [])


SLACK_OUTAGES = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
"""Errors that say Slack is down or busy, not that it refuses: the step is retried."""


def refused_line(refused: Sequence[tuple[str, str]]) -> str:
    """The one line an incident channel gets for the bookmarks Slack refused: which, why,
    that the incident goes on, and the fix when it is the app's scopes."""
    errors = {error for _, error in refused}
    titles = [title for title, _ in refused]
    if len(errors) == 1:
        names = " and ".join(titles) if len(titles) <= 2 else ", ".join(titles)
        noun = "bookmark" if len(titles) == 1 else "bookmarks"
        what = f"the {names} {noun}: {next(iter(errors))}"
    else:
        what = "the bookmarks " + ", ".join(f"{t} ({e})" for t, e in refused)
    them = "it" if len(titles) == 1 else "them"
    hint = (
        " Add the bookmarks:write scope to the Slack app (manifest.yml) and reinstall it."
        if "missing_scope" in errors
        else ""
    )
    return f":warning: Slack refused {what}. The incident goes on without {them}.{hint}"
