"""Paging the on-call for an incident: a small `Pager` interface and PagerDuty's Events API v2.

Incidents only ever call `trigger`, `acknowledge` and `resolve` with the incident (the dict
`Incidents.load` returns), so Opsgenie or Grafana OnCall can follow as another class with the
same three methods. A pager raises `PageError` with one line a person can act on; the caller
shows it in the incident channel and retries later, so a failed page never blocks the
incident itself.

PagerDuty (developer.pagerduty.com/docs/events-api-v2/trigger-events): one POST per event to
`/v2/enqueue`, answered 202. The dedup_key is the incident's id, so a re-send after a crash,
a retry, or a second replica sending the same event changes nothing on PagerDuty's side: one
alert, acknowledged and resolved by the same key. 429 and 5xx are retried here a few times
with backoff (PagerDuty asks for that); another 4xx is a mistake in the key or the event and
is not retried. The routing key is a secret: it is only ever in the request body, never in a
log line or an error (any text PagerDuty sends back is scrubbed of it too).

Severity: an incident has `sev1`..`sev3` (sev1 the worst). An alert-opened incident takes it
from its `severity` label (Alertmanager's convention): `critical` is sev1, `error` or `high`
sev2, `warning` and anything else (or none) sev3.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, Protocol

import httpx

log = logging.getLogger(__name__)

Severity = Literal["sev1", "sev2", "sev3"]
SEVERITIES: tuple[Severity, ...] = ("sev1", "sev2", "sev3")
DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_MAX = 1024  # PagerDuty's limit on payload.summary
DEDUP_MAX = 255  # and on dedup_key
PD_SEVERITY: dict[str, str] = {"sev1": "critical", "sev2": "error", "sev3": "warning"}
"""queueops' severity as PagerDuty's (`critical`, `error`, `warning`, `info`)."""
LABEL_SEVERITY: dict[str, Severity] = {"critical": "sev1", "error": "sev2", "high": "sev2"}


class PageError(Exception):
    """A page that did not get through, as one line without the routing key. `retryable`
    is False when sending the same thing again cannot help (PagerDuty refused it)."""

    def __init__(self, line: str, *, retryable: bool) -> None:
        super().__init__(line)
        self.retryable = retryable


class Pager(Protocol):
    """What Incidents needs from a paging service: the three moves of an incident."""

    name: str
    """How the service is named in the channel ("PagerDuty")."""

    async def trigger(self, incident: Mapping[str, Any]) -> None: ...

    async def acknowledge(self, incident: Mapping[str, Any], by: str) -> None: ...

    async def resolve(self, incident: Mapping[str, Any]) -> None: ...


def severity_of_labels(labels: Mapping[str, str]) -> Severity:
    """An alert's `severity` label as an incident severity (module docstring)."""
    return LABEL_SEVERITY.get(labels.get("severity", "").strip().lower(), "sev3")


def at_or_above(severity: str, threshold: str) -> bool:
    """sev1 is above sev2: paged when the incident is at least as bad as the threshold."""
    rank: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
    return rank.get(severity, len(SEVERITIES)) <= rank.get(threshold, 0)


def channel_url(channel_id: str) -> str:
    """A link that opens the channel in whichever workspace the reader is signed in to."""
    return f"https://slack.com/app_redirect?channel={channel_id}"


class PagerDutyPager:
    """PagerDuty's Events API v2 over httpx, with bounded timeouts and retries."""

    name = "PagerDuty"

    def __init__(
        self,
        routing_key: str,
        *,
        url: str = DEFAULT_URL,
        attempts: int = 4,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._key = routing_key
        self.url = url
        self.attempts = attempts
        self.backoff_s = backoff_s
        # Bounded: a PagerDuty that does not answer costs at most attempts x timeout, and the
        # incident lock is renewed meanwhile.
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 3.0)), transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the three events ----------------------------------------------------------------

    async def trigger(self, incident: Mapping[str, Any]) -> None:
        await self._send(self.trigger_event(incident))

    async def acknowledge(self, incident: Mapping[str, Any], by: str) -> None:
        await self._send(self._event("acknowledge", incident))

    async def resolve(self, incident: Mapping[str, Any]) -> None:
        await self._send(self._event("resolve", incident))

    def trigger_event(self, incident: Mapping[str, Any]) -> dict[str, Any]:
        """The v2 trigger event: what the responder's phone shows, and links back to Slack."""
        queues: list[str] = list(incident.get("queues") or [])
        severity = str(incident.get("severity") or "sev3")
        summary = f"[{severity}] {incident.get('title', 'queue incident')}"
        if queues:
            summary += f" on {', '.join(queues)}"
        if incident.get("summary"):
            summary += f": {incident['summary']}"
        starts_at = incident.get("starts_at")
        details = {
            "incident": incident["id"],
            "severity": severity,
            "queues": queues,
            "labels": dict(incident.get("labels") or {}),
            "summary": incident.get("summary") or "",
            "runbook": incident.get("runbook"),
            "slack_channel": incident.get("channel_name"),
        }
        payload: dict[str, Any] = {
            "summary": summary[:SUMMARY_MAX],
            "source": "queueops",
            "severity": PD_SEVERITY.get(severity, "warning"),
            "component": ", ".join(queues)[:255] or "all queues",
            "custom_details": {k: v for k, v in details.items() if v not in (None, "")},
        }
        if isinstance(starts_at, datetime):
            payload["timestamp"] = starts_at.isoformat()
        links = []
        if incident.get("channel_id"):
            name = incident.get("channel_name") or incident["channel_id"]
            links.append({"href": channel_url(incident["channel_id"]), "text": f"Slack #{name}"})
        if incident.get("link"):
            links.append({"href": str(incident["link"]), "text": "Alert source"})
        return {**self._event("trigger", incident), "payload": payload, "links": links}

    def _event(self, action: str, incident: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "routing_key": self._key,
            "event_action": action,
            "dedup_key": str(incident["id"])[:DEDUP_MAX],
            "client": "queueops",
        }

    # -- delivery --------------------------------------------------------------------------

    async def _send(self, event: dict[str, Any]) -> None:
        """POST until 202, retrying 429/5xx/network errors `attempts` times with backoff."""
        action = event["event_action"]
        last = ""
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                resp = await self._http.post(self.url, json=event)
            except httpx.HTTPError as err:
                last = f"{type(err).__name__}: {self._scrub(str(err)) or 'no answer'}"
                continue
            if resp.status_code in (200, 201, 202):
                return
            reason = self._reason(resp)
            if resp.status_code == 429 or resp.status_code >= 500:
                last = f"HTTP {resp.status_code}{reason}"
                continue
            hint = (
                " (check PAGERDUTY_ROUTING_KEY)" if resp.status_code in (400, 401, 403, 404) else ""
            )
            raise PageError(
                f"{self.name} refused the {action}: HTTP {resp.status_code}{reason}{hint}",
                retryable=False,
            )
        raise PageError(
            f"{self.name} did not take the {action} after {self.attempts} tries: {last}",
            retryable=True,
        )

    def _reason(self, resp: httpx.Response) -> str:
        """PagerDuty's own words (`message`, `errors`), short and without the key."""
        try:
            body = resp.json()
        except ValueError:
            return ""
        if not isinstance(body, dict):
            return ""
        parts = [str(body.get("message") or "")]
        errors = body.get("errors")
        if isinstance(errors, list):
            parts += [str(e) for e in errors[:3]]
        text = "; ".join(p for p in parts if p)
        return f" ({self._scrub(text)[:200]})" if text else ""

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "<routing key>") if self._key else text


PageAction = Literal["trigger", "acknowledge", "resolve"]
PAGE_FIELDS = ("severity", "paged_at", "page_status", "page_ack_by", "status", "resolved_at")
"""The incident hash fields `page_due` reads: one HMGET tells whether anything is due."""


def page_due(incident: Mapping[str, Any], threshold: str) -> PageAction | None:
    """The next event the pager is owed, from what the incident hash records.

    `paged_at` is written before the first trigger is sent and `page_status` (the last event
    PagerDuty took) after, so a crash in between sends the trigger again (harmless: the same
    dedup_key) and a replica that finds `page_status` set sends nothing. An incident below
    `threshold` that was never paged owes nothing; one resolved before it was paged neither.
    A lead taken before the trigger went through gets the trigger first, then the ack.
    """
    paged = bool(incident.get("paged_at"))
    done = incident.get("page_status") or ""
    if incident.get("resolved_at") or incident.get("status") == "resolved":
        return "resolve" if paged and done != "resolve" else None
    if not paged and not at_or_above(str(incident.get("severity") or "sev3"), threshold):
        return None
    if done not in ("trigger", "acknowledge"):
        return "trigger"
    if incident.get("page_ack_by") and done != "acknowledge":
        return "acknowledge"
    return None
