"""The postmortem an incident leaves when it resolves: a Slack message in its channel and the
same, complete, as a Markdown file attached to it (the runbook's "Post-incident").

Both have the summary (title, queues, source, who declared it or which alert), severity,
lead, duration (opened → resolved), impact, timeline and follow-ups, then the headings the
people writing it fill in (root cause, mitigation, reprocessing plan, lessons learned).

The message must fit Slack (a section's text at most 3000 characters, at most 50 blocks),
so it shows the newest timeline entries that fit and says how many earlier ones only the
file has; the file has every entry with its time to the second, in UTC.

Impact is gathered while the incident runs, on its hash, so nothing is computed from
history Redis no longer has:

- `impact_peak_depth` and `impact_oldest_ms`: the largest depth and oldest waiting age of
  the incident's queues, from every snapshot its status shows (opening, each refresh, the
  final one) and, at resolve, the tick's depth samples (the last hour) that fall within it.
  Depth is what the tick's samples call depth (probe.lua): waiting + paused + prioritized,
  summed over the incident's queues.
- `impact_quarantined` and `impact_replayed`: the jobs `quarantine` and `dlq replay` moved
  when run in the incident's channel (AuditEntry.jobs, counted by bot/http_app.py's timeline
  listener with the timeline entry).

Follow-ups (`incident followup "TEXT"`) are a bounded Redis list per incident,
`<state>:followups:<iid>`; they may be added after the resolve, when postmortems are
written, and the message is then edited in place to list them (bot/incidents/desk.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.durations import format_duration_ms, humanize_age_ms
from bot.errors import Refused
from bot.queues.models import QueueSnapshot
from bot.slack.blocks import escape
from bot.text import plural
from bot.urls import url_fit_to_show
from commands.view import Block as ViewBlock

FOLLOWUPS_MAX = 100
"""Follow-ups kept per incident: more is a backlog, not a postmortem's list."""
SECTION_MAX = 2900
"""Of Slack's 3000 characters in a section's text, a margin for the joins."""
TIMELINE_SECTIONS = 3
"""Sections the message gives the timeline (the rest of the 50 blocks stay unused: a
postmortem several screens long in the channel is read by nobody; the file has it all)."""
FOLLOWUP_SECTIONS = 2
LINE_MAX = 300
"""A timeline entry or follow-up as the message shows it (the file has it whole)."""
MARKDOWN_TEXT_MAX = 4000
"""One entry's text in the file: enough for any update, bounded against a pasted log."""
DEPTH_WORDS = "waiting + paused + prioritized"

TO_FILL = (
    ("Root cause", ""),
    ("Mitigation", ""),
    ("Reprocessing plan", "DLQ replay as a canary, 10-50 jobs first"),
    ("Lessons learned", ""),
)
"""The runbook's headings the people writing the postmortem fill in."""
FOLLOWUP_AREAS = (
    "rate limiting, DLQ improvements, consumer autoscaling and DB capacity, job schema; "
    "update the runbook"
)
"""The runbook's usual follow-up areas, a reminder under the follow-ups."""

SET_IF_GREATER = """
for i = 1, #ARGV, 2 do
  local current = tonumber(redis.call("HGET", KEYS[1], ARGV[i]))
  local seen = tonumber(ARGV[i + 1])
  if current == nil or seen > current then
    redis.call("HSET", KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 0
"""
"""A maximum kept on the incident's hash. A script because HSET has no "only if greater"
and a read-then-write from two replicas (or a refresh racing the resolve) could lower it."""

ADD_BOUNDED = """
if redis.call("LLEN", KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
return redis.call("RPUSH", KEYS[1], ARGV[1])
"""
"""A follow-up appended unless the list is full, in one step (two replicas adding at once
cannot pass the bound)."""


@dataclass(frozen=True)
class ImpactSample:
    """What one snapshot of the incident's queues says about its impact."""

    depth: int
    oldest_waiting_age_ms: int | None = None

    @classmethod
    def of(cls, snaps: Sequence[QueueSnapshot]) -> ImpactSample:
        ages = [q.oldest_waiting_age_ms for q in snaps if q.oldest_waiting_age_ms is not None]
        return cls(
            depth=sum(depth_of(q.counts) for q in snaps),
            oldest_waiting_age_ms=max(ages) if ages else None,
        )


def depth_of(counts: dict[str, int]) -> int:
    """A queue's depth as the tick's samples count it (probe.lua)."""
    return sum(counts.get(s, 0) for s in ("waiting", "paused", "prioritized"))


@dataclass(frozen=True)
class SnapshotSeen:
    """A snapshot as the incident channel shows it, and the impact it saw (None: unknown)."""

    blocks: list[ViewBlock]
    sample: ImpactSample | None = None


@dataclass(frozen=True)
class Impact:
    peak_depth: int | None = None
    oldest_waiting_age_ms: int | None = None
    quarantined: int = 0
    replayed: int = 0

    @classmethod
    def of(cls, incident: dict[str, Any]) -> Impact:
        def number(field: str) -> int | None:
            raw = incident.get(field)
            return int(raw) if raw not in (None, "") else None

        return cls(
            peak_depth=number("impact_peak_depth"),
            oldest_waiting_age_ms=number("impact_oldest_ms"),
            quarantined=number("impact_quarantined") or 0,
            replayed=number("impact_replayed") or 0,
        )

    def lines(self) -> list[str]:
        """Plain words (no markup), for both the message and the file."""
        depth = (
            f"{plural(self.peak_depth, 'job')} ({DEPTH_WORDS})"
            if self.peak_depth is not None
            else "not seen"
        )
        oldest = (
            humanize_age_ms(self.oldest_waiting_age_ms)
            if self.oldest_waiting_age_ms is not None
            else "no job was seen waiting"
        )
        return [
            f"Peak depth: {depth}",
            f"Oldest waiting job: {oldest}",
            f"Jobs quarantined: {self.quarantined:,} · replayed: {self.replayed:,} "
            "(commands run in the incident channel)",
        ]


@dataclass(frozen=True)
class Followup:
    at_ms: int
    by: str
    text: str

    def dump(self) -> str:
        return json.dumps({"at_ms": self.at_ms, "by": self.by, "text": self.text})

    @classmethod
    def load(cls, raw: str) -> Followup:
        found = json.loads(raw)
        return cls(at_ms=int(found["at_ms"]), by=str(found["by"]), text=str(found["text"]))


@dataclass(frozen=True)
class Postmortem:
    blocks: list[Block]
    text: str
    """The notification's fallback text."""
    markdown: str
    filename: str
    title: str


# -- where it is kept ---------------------------------------------------------------------


class PostmortemState:
    """The impact maxima and the follow-ups, on the incident's hash and beside it."""

    def __init__(self, redis: Redis, state_prefix: str) -> None:
        self.redis = redis
        self.s = state_prefix
        self._set_if_greater = redis.register_script(SET_IF_GREATER)
        self._add_bounded = redis.register_script(ADD_BOUNDED)

    def _key(self, iid: str) -> str:
        return f"{self.s}:incident:{iid}"

    def followups_key(self, iid: str) -> str:
        return f"{self.s}:followups:{iid}"

    async def note(self, iid: str, sample: ImpactSample) -> None:
        """Keep the largest depth and oldest age seen (one script call)."""
        args: list[str | int] = ["impact_peak_depth", sample.depth]
        if sample.oldest_waiting_age_ms is not None:
            args += ["impact_oldest_ms", sample.oldest_waiting_age_ms]
        await self._set_if_greater(keys=[self._key(iid)], args=args)

    async def fold_series(
        self, iid: str, series: Iterable[tuple[int, int]], since_ms: int, until_ms: int
    ) -> None:
        """The tick's depth samples (ms, total depth) within the incident, folded into its
        peak depth: the snapshots see only the moments someone looked."""
        inside = [depth for at, depth in series if since_ms <= at <= until_ms]
        if inside:
            await self._set_if_greater(
                keys=[self._key(iid)], args=["impact_peak_depth", max(inside)]
            )

    async def add_followup(self, iid: str, text: str, *, by: str, at_ms: int) -> int:
        """Append a follow-up; its number (1 is the first). Refused when the list is full."""
        number = int(
            await self._add_bounded(
                keys=[self.followups_key(iid)],
                args=[Followup(at_ms=at_ms, by=by, text=text).dump(), FOLLOWUPS_MAX],
            )
        )
        if not number:
            raise Refused(
                f"this incident has {FOLLOWUPS_MAX} follow-ups, the most it keeps; "
                "add the rest to the postmortem document"
            )
        return number

    async def followups(self, iid: str) -> list[Followup]:
        return [
            Followup.load(str(r)) for r in await self.redis.lrange(self.followups_key(iid), 0, -1)
        ]


# -- what it says -------------------------------------------------------------------------


def _at(ms: int, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime(fmt)


def _who_slack(actor: str) -> str:
    """An actor ("slack:U123", "cli:alice") as Slack shows a person."""
    found = re.fullmatch(r"slack:([UW][A-Z0-9]+)", actor)
    return f"<@{found.group(1)}>" if found else escape(actor)


def _short(text: str, limit: int = LINE_MAX) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def duration_words(incident: dict[str, Any]) -> str:
    """Opened → resolved, to the second ("1h5m30s"); "still open" before the resolve."""
    opened = int(incident.get("opened_at") or 0)
    resolved = incident.get("resolved_at")
    if not opened or not resolved:
        return "still open"
    return format_duration_ms(max(int(resolved) - opened, 0) // 1000 * 1000)


def source_words(incident: dict[str, Any]) -> str:
    """Who declared it, or which alert opened it (plain words)."""
    source = str(incident.get("source") or "")
    if source == "declared":
        declared = str(incident.get("declared_summary") or "")
        return declared or "declared in Slack"
    labels = incident.get("labels") or {}
    name = labels.get("alertname") or labels.get("rule") or incident.get("title", "")
    return f"alert {name} from {source or 'an alert source'}"


def _lead_plain(incident: dict[str, Any]) -> str | None:
    return str(incident["lead"]) if incident.get("lead") else None


def _pack(lines: Sequence[str], sections: int, *, newest: bool, more: str) -> list[str]:
    """`lines` in at most `sections` texts of SECTION_MAX characters each: the newest (the
    last) or the first that fit, with one line saying how many only the file has."""
    room = SECTION_MAX - 80  # each text keeps room for that line
    chunks: list[list[str]] = [[]]
    size = kept = 0
    for line in reversed(lines) if newest else lines:
        line = line[:room]
        if size + len(line) + 1 > room:
            if len(chunks) == sections:
                break
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += len(line) + 1
        kept += 1
    if newest:
        chunks = [chunk[::-1] for chunk in reversed(chunks)]
    left = len(lines) - kept
    if left:
        note = f"_… {plural(left, more)} in the file_"
        if newest:
            chunks[0].insert(0, note)
        else:
            chunks[-1].append(note)
    return ["\n".join(chunk) for chunk in chunks if chunk]


def _slack(text: str, limit: int = LINE_MAX) -> str:
    """User text for mrkdwn: on one line, escaped (no ping, no link), and no ``` fence (it
    would swallow the rest of the section as code)."""
    return escape(_short(text, limit)).replace("```", "'''")


def slack_message(
    incident: dict[str, Any],
    timeline: Sequence[dict[str, Any]],
    followups: Sequence[Followup],
    impact: Impact,
    *,
    filename: str,
) -> tuple[list[Block], str]:
    """The message in the channel: blocks and the notification's text."""
    title = str(incident["title"])
    queues = ", ".join(incident.get("queues") or []) or "all queues"
    lead = _lead_plain(incident)
    summary = [
        f"*{_slack(title)}* on {_slack(queues)}",
        f"Source: {_slack(source_words(incident))}",
    ]
    if incident.get("summary") and incident["summary"] != incident.get("declared_summary"):
        summary.append(f"Latest: {_slack(str(incident['summary']))}")
    opened = int(incident.get("opened_at") or 0)
    resolved = incident.get("resolved_at")
    summary += [
        f"*Severity:* {_slack(str(incident.get('severity') or 'sev3'))} · "
        f"*Lead:* {f'<@{escape(lead)}>' if lead else 'nobody'}",
        f"*Duration:* {duration_words(incident)} "
        f"(opened {_at(opened)}" + (f", resolved {_at(int(resolved))})" if resolved else ")"),
    ]
    rows = [f"• {_at(int(e['at_ms']), '%H:%M')} {_slack(str(e['text']))}" for e in timeline]
    todo = [
        f"*{name}*" + (f" ({escape(hint)})" if hint else "") + "\n_to fill in_"
        for name, hint in TO_FILL
    ]
    follow = [
        f"{n}. {_slack(f.text)} _({_who_slack(f.by)}, {_at(f.at_ms, '%m-%d %H:%M')})_"
        for n, f in enumerate(followups, 1)
    ]

    def section(text: str) -> SectionBlock:
        return SectionBlock(text=MarkdownTextObject(text=text[:SECTION_MAX]))

    blocks: list[Block] = [
        HeaderBlock(text=_short(f"Postmortem: {title}", 150)),
        section("\n".join(summary)),
        section("*Impact*\n" + "\n".join(escape(line) for line in impact.lines())),
        DividerBlock(),
        section("*Timeline (UTC)*"),
        *(
            section(t)
            for t in _pack(rows, TIMELINE_SECTIONS, newest=True, more="earlier entry")
            or ["• (nothing was entered)"]
        ),
        section('*Follow-ups* (`/queue incident followup "TEXT"` adds one)'),
        *(
            section(t)
            for t in _pack(follow, FOLLOWUP_SECTIONS, newest=False, more="more follow-up")
            or [f"_none yet; the usual areas: {FOLLOWUP_AREAS}_"]
        ),
        DividerBlock(),
        section("\n".join(todo)),
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=f"The whole postmortem, every timeline entry, is in {escape(filename)} "
                    "below, as of the resolve; this message lists follow-ups added since."
                )
            ]
        ),
    ]
    return blocks, f"Postmortem: {_slack(title, 150)}"


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~&])")


def md(text: str, limit: int = MARKDOWN_TEXT_MAX) -> str:
    """User text made inert in Markdown: on one line (a newline would end a list item or
    start a heading), and the characters that make code, emphasis, links, HTML, entities
    and tables escaped with a backslash (CommonMark allows it for any ASCII punctuation),
    so backticks, `<!channel>`, links and tables show as typed. `(`, `!`, `+`, `-` mean
    something only after a `]` or at a line's start, which user text never is here.
    Bounded to `limit` characters."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return _MD_SPECIAL.sub(r"\\\1", flat)


_AUTOLINK = re.compile(r"https?://[^\s<>`]{1,2000}")


def md_link(url: str) -> str:
    """A link as a Markdown autolink (`<https://...>`, where backslash escapes would be
    taken literally), without credentials; anything else as escaped text."""
    shown = url_fit_to_show(url)
    return f"<{shown}>" if _AUTOLINK.fullmatch(shown) else md(shown, 2000)


def markdown(
    incident: dict[str, Any],
    timeline: Sequence[dict[str, Any]],
    followups: Sequence[Followup],
    impact: Impact,
) -> str:
    """The whole postmortem as a Markdown document: every timeline entry, times in UTC."""
    title = str(incident["title"])
    queues = ", ".join(incident.get("queues") or []) or "all queues"
    opened = int(incident.get("opened_at") or 0)
    resolved = incident.get("resolved_at")
    lead = _lead_plain(incident)
    out = [
        f"# Postmortem: {md(title, 300)}",
        "",
        "## Summary",
        "",
        f"- Title: {md(title)}",
        f"- Queues: {md(queues)}",
        f"- Source: {md(source_words(incident))}",
    ]
    if incident.get("summary") and incident["summary"] != incident.get("declared_summary"):
        out.append(f"- Latest summary: {md(str(incident['summary']))}")
    if incident.get("starts_at"):
        starts = incident["starts_at"]
        fired = starts if isinstance(starts, datetime) else datetime.fromisoformat(str(starts))
        out.append(f"- Fired: {fired.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC")
    if incident.get("link"):
        out.append(f"- Source link: {md_link(str(incident['link']))}")
    out += [
        f"- Incident: {md(str(incident.get('id', '')))}"
        + (f" (#{md(str(incident['channel_name']))})" if incident.get("channel_name") else ""),
        "",
        "## Severity",
        "",
        md(str(incident.get("severity") or "sev3")),
        "",
        "## Lead",
        "",
        f"Slack user {md(lead)}" if lead else "nobody took the lead",
        "",
        "## Duration",
        "",
        f"{duration_words(incident)}: opened {_at(opened, '%Y-%m-%d %H:%M:%S UTC')}"
        + (f", resolved {_at(int(resolved), '%Y-%m-%d %H:%M:%S UTC')}" if resolved else ""),
        "",
        "## Impact",
        "",
        *(f"- {line}" for line in impact.lines()),  # our words, no user text
        "",
        "## Timeline",
        "",
        "All times UTC.",
        "",
        *(
            f"- {_at(int(e['at_ms']), '%Y-%m-%d %H:%M:%S')} — {md(str(e['text']))}"
            for e in timeline
        ),
    ]
    if not timeline:
        out.append("- (nothing was entered)")
    out += ["", "## Follow-ups", ""]
    out += [
        f"{n}. {md(f.text)} ({md(f.by)}, {_at(f.at_ms, '%Y-%m-%d %H:%M UTC')})"
        for n, f in enumerate(followups, 1)
    ] or ["- none yet"]
    out += ["", f"The runbook's usual areas: {FOLLOWUP_AREAS}.", ""]
    for name, hint in TO_FILL:
        out += [f"## {name}", ""] + ([f"_{hint}_", ""] if hint else []) + ["_to fill in_", ""]
    return "\n".join(out)


def build(
    incident: dict[str, Any],
    timeline: Sequence[dict[str, Any]],
    followups: Sequence[Followup],
) -> Postmortem:
    """The message and the file of an incident, from its hash (Incidents.load, with
    `source` and `declared_summary` from its event), timeline and follow-ups."""
    impact = Impact.of(incident)
    name = str(incident.get("channel_name") or incident.get("id") or "incident")
    filename = f"postmortem-{name}.md"
    blocks, text = slack_message(incident, timeline, followups, impact, filename=filename)
    return Postmortem(
        blocks=blocks,
        text=text,
        markdown=markdown(incident, timeline, followups, impact),
        filename=filename,
        title=_short(f"Postmortem: {incident['title']}", 250),
    )
