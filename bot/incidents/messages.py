"""What an incident channel shows: the status message (alert, snapshot, the runbook's triage
checklist, action buttons) and the resolution; the postmortem is bot/incidents/postmortem.py.

Built with slack_sdk's block models; the snapshot part is the snapshot command's own view.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    CheckboxesElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    Option,
    SectionBlock,
)

from bot.alerts.models import AlertEvent
from bot.incidents.paging import severity_of_labels
from bot.slack.blocks import escape, render_blocks
from bot.text import plural
from commands.view import Block as ViewBlock

# The runbook's "Triage checklist (first 10 minutes)".
TRIAGE_CHECKLIST = (
    "Acknowledge alert and create incident channel",
    "Snapshot metrics from Prometheus/Grafana for the last 30-60 minutes",
    "Run quick queue inspection: waiting/active/failed counts",
    "Identify top job types causing backlog",
    "Identify oldest pending job and sample its payload",
    "Check consumer logs (worker pods) for errors or OOMs",
    "Decide mitigation: throttle producers / scale consumers / pause backfills / dead-letter",
)
# The runbook's "Quick summary (first 5 minutes)".
FIRST_FIVE_MINUTES = (
    "Snapshot queue state (depth, oldest job age, types)",
    "Root cause category: producer storm, consumer outage, slow processing, retry storm, "
    "poison messages, DB problems",
    "Conservative mitigations: stop new producers, reduce retry flood, scale consumers cautiously",
    "Collect logs, job samples and queue metrics for the postmortem",
)


def utc(dt: datetime | int) -> str:
    if isinstance(dt, int):
        dt = datetime.fromtimestamp(dt / 1000, tz=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


TAKE_LEAD = "incident_take_lead"
"""The action id of the `Take the lead` button (bot/incidents/actions.py handles it)."""


def lead_lines(incident: dict[str, Any]) -> list[str]:
    """Severity and lead, then the latest update (each `incident update` replaces it): what
    a responder joining the channel needs first."""
    lead = f"<@{escape(str(incident['lead']))}>" if incident.get("lead") else "nobody yet"
    # Before `open` records it, the severity is the labels' (the first render).
    severity = incident.get("severity") or severity_of_labels(incident.get("labels") or {})
    lines = [f"*{escape(str(severity))}* · lead: {lead}"]
    if incident.get("update"):
        by = str(incident.get("updated_by") or "")
        who = f"<@{by.removeprefix('slack:')}>" if by.startswith("slack:") else escape(by)
        lines.append(
            f":mega: {escape(str(incident['update']))} "
            f"_({utc(int(incident.get('updated_at') or 0))}, {who})_"
        )
    return lines


WATCHER_GROUP = "watcher:"
"""The group keys of the watcher's alerts (bot/alerts/watcher.py: Breach.group_key)."""


def watcher_group_of(incident: dict[str, Any]) -> str | None:
    """The watcher group (`watcher:<rule>:<queue>`) an incident belongs to, or None. The
    incident keeps its group only as the id's hash (`<group id>-<n>`, AlertEvent.group_id):
    the group its labels name must hash to it, so an Alertmanager alert that happens to
    carry `rule` and `queue` labels does not get the watcher's buttons."""
    labels = incident.get("labels") or {}
    key = f"{WATCHER_GROUP}{labels.get('rule', '')}:{labels.get('queue', '')}"
    gid = AlertEvent.group_id_of(key)
    return key if str(incident.get("id", "")).startswith(f"{gid}-") else None


def watcher_lines(incident: dict[str, Any], now_ms: int | None = None) -> list[str]:
    """Who acknowledged a watcher incident, and until when its rule is snoozed."""
    lines = []
    if incident.get("acked_by"):
        lines.append(
            f":eyes: Acknowledged by <@{escape(str(incident['acked_by']))}> "
            f"at {utc(int(incident.get('acked_at') or 0))}"
        )
    until = int(incident.get("snoozed_until") or 0)
    now = now_ms if now_ms is not None else int(datetime.now(tz=UTC).timestamp() * 1000)
    if until > now:
        lines.append(f":zzz: Watcher snoozed until {utc(until)}")
    return lines


def status_message(
    incident: dict[str, Any], snapshot: list[ViewBlock], *, drain_available: bool
) -> list[Block]:
    """The pinned message: re-rendered (chat.update) as notifications come in."""
    resolved = incident.get("status") == "resolved"
    mark = ":white_check_mark: Resolved" if resolved else ":rotating_light: Firing"
    title = f"{incident['title']}" + (
        f" on {', '.join(incident['queues'])}" if incident["queues"] else ""
    )
    lines = [f"*{mark}* since {utc(incident['starts_at'])}", *lead_lines(incident)]
    if incident.get("summary"):
        lines.append(escape(incident["summary"]))
    links = []
    if incident.get("link"):
        links.append(f"<{incident['link']}|source>")
    if incident.get("runbook"):
        links.append(f"<{incident['runbook']}|runbook>")
    if links:
        lines.append(" · ".join(links))
    watcher = watcher_group_of(incident)
    if watcher:
        lines += watcher_lines(incident)
    labels = ", ".join(f"`{escape(k)}={escape(v)}`" for k, v in incident["labels"].items())
    blocks: list[Block] = [
        HeaderBlock(text=title[:150]),
        SectionBlock(text=MarkdownTextObject(text="\n".join(lines))),
    ]
    if labels:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=labels[:2900])]))
    blocks.append(
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=f"{plural(int(incident.get('notifications', 1)), 'notification')}, "
                    "last at "
                    f"{utc(incident.get('last_notified_at', incident['opened_at']))}"
                    + (f" · resolved {utc(incident['resolved_at'])}" if resolved else "")
                )
            ]
        )
    )
    blocks.append(DividerBlock())
    blocks += render_blocks(snapshot)[:20]
    blocks.append(DividerBlock())
    blocks.append(
        SectionBlock(
            text=MarkdownTextObject(
                text="*First 5 minutes*\n" + "\n".join(f"• {s}" for s in FIRST_FIVE_MINUTES)
            )
        )
    )
    blocks.append(
        ActionsBlock(
            block_id="incident_checklist",
            elements=[
                CheckboxesElement(
                    action_id="incident_checklist",
                    options=[
                        Option(value=str(i), text=item[:75])
                        for i, item in enumerate(TRIAGE_CHECKLIST)
                    ],
                )
            ],
        )
    )
    if not resolved:
        queue = incident["queues"][0] if incident["queues"] else ""
        value = f"{incident['id']}|{queue}"
        buttons = [ButtonElement(text="Snapshot", action_id="incident_snapshot", value=value)]
        if not incident.get("lead"):
            buttons.insert(0, ButtonElement(text="Take the lead", action_id=TAKE_LEAD, value=value))
        if drain_available:
            buttons.append(ButtonElement(text="Drain now", action_id="incident_drain", value=value))
        if queue:
            buttons += [
                ButtonElement(text="Pause queue", action_id="incident_pause", value=value),
                ButtonElement(text="Quarantine…", action_id="incident_quarantine", value=value),
            ]
        if watcher:
            buttons += [
                ButtonElement(text="Acknowledge", action_id="incident_ack", value=value),
                ButtonElement(text="Snooze 1h", action_id="incident_snooze", value=value),
            ]
        buttons.append(
            ButtonElement(
                text="Resolve", action_id="incident_resolve", value=value, style="primary"
            )
        )
        blocks.append(ActionsBlock(block_id="incident_actions", elements=buttons))
    return blocks
