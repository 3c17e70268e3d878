"""Paging: an incident at or above PAGE_SEVERITY pages PagerDuty once, by its id.

The real app over HTTP, the Slack stand-in, real Redis, and a local PagerDuty Events API v2
stand-in that checks every event against the v2 schema as strictly as PagerDuty documents
it (developer.pagerduty.com/docs/events-api-v2/trigger-events) and can be told to fail.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer
from alert_helpers import wait_until
from slack_helpers import BOT_TOKEN, MakeBot
from slack_sdk.web.async_client import AsyncWebClient
from slack_stub import SlackStub

from bot.incidents import channels
from bot.incidents.channels import Incidents
from bot.incidents.paging import PagerDutyPager, severity_of_labels

TOKEN = "example-token"
KEY = "R0PAGERDUTYROUTINGKEY0123456789A"  # 32 characters, as PagerDuty's integration keys
ALERT = {"title": "QueueBacklog", "queue": "batch-jobs", "fingerprint": "pd-1"}

TOP = {"routing_key", "event_action", "dedup_key", "payload", "images", "links", "client"}
TOP |= {"client_url"}
PAYLOAD = {"summary", "source", "severity", "timestamp", "component", "group", "class"}
PAYLOAD |= {"custom_details"}


def schema_errors(event: Any) -> list[str]:
    """What PagerDuty would refuse in this event (an empty list: it would take it)."""
    if not isinstance(event, dict):
        return ["not an object"]
    errors = [f"unknown field {k}" for k in event if k not in TOP]
    if not isinstance(event.get("routing_key"), str) or len(event["routing_key"]) != 32:
        errors.append("routing_key: 32 characters")
    action = event.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        errors.append(f"event_action: {action!r}")
    dedup = event.get("dedup_key")
    if not isinstance(dedup, str) or not 1 <= len(dedup) <= 255:
        errors.append("dedup_key: 1..255 characters")
    for link in event.get("links", []):
        if set(link) - {"href", "text"} or not str(link.get("href", "")).startswith("http"):
            errors.append(f"links: {link!r}")
    if action != "trigger":
        return errors if "payload" not in event else [*errors, "payload on a non-trigger"]
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return [*errors, "payload required"]
    errors += [f"payload: unknown field {k}" for k in payload if k not in PAYLOAD]
    summary = payload.get("summary")
    if not isinstance(summary, str) or not 1 <= len(summary) <= 1024:
        errors.append("payload.summary: 1..1024 characters")
    if not isinstance(payload.get("source"), str) or not payload["source"]:
        errors.append("payload.source required")
    if payload.get("severity") not in ("critical", "error", "warning", "info"):
        errors.append(f"payload.severity: {payload.get('severity')!r}")
    if "timestamp" in payload:
        try:
            datetime.fromisoformat(payload["timestamp"])
        except (TypeError, ValueError):
            errors.append("payload.timestamp: ISO 8601")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
        errors.append("payload.custom_details: an object")
    return errors


@dataclass
class PagerDutyStub:
    """Events API v2 on loopback: 202 for a valid event with the known key, 400 otherwise
    (echoing the key it was sent, as a careless service might), or the queued statuses."""

    events: list[dict[str, Any]] = field(default_factory=list)
    """Events it accepted, in order."""
    requests: int = 0
    refused: list[list[str]] = field(default_factory=list)
    fail: list[int] = field(default_factory=list)
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/v2/enqueue"))

    def of(self, action: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event_action"] == action]

    async def enqueue(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.fail:
            return web.json_response({"status": "busy"}, status=self.fail.pop(0))
        try:
            event = json.loads(await request.text())
        except ValueError:
            return web.json_response({"status": "invalid event"}, status=400)
        errors = schema_errors(event)
        if not errors and event["routing_key"] != KEY:
            errors = [f"routing key {event['routing_key']} is not a known integration"]
        if errors:
            self.refused.append(errors)
            body = {"status": "invalid event", "message": "Event object is invalid"}
            return web.json_response({**body, "errors": errors}, status=400)
        self.events.append(event)
        body = {"status": "success", "message": "Event processed"}
        return web.json_response({**body, "dedup_key": event["dedup_key"]}, status=202)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v2/enqueue", self.enqueue)
        self.server = TestServer(app, host="127.0.0.1")  # a free port
        await self.server.start_server()


@pytest_asyncio.fixture
async def pagerduty() -> AsyncIterator[PagerDutyStub]:
    stub = PagerDutyStub()
    await stub.start()
    yield stub
    assert stub.server is not None
    await stub.server.close()


async def post(bot: Any, body: dict[str, Any]) -> None:
    resp = await bot.post(
        "/alerts/generic",
        data=json.dumps(body),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert resp.status == 200, await resp.text()


async def paging_bot(make_bot: MakeBot, pagerduty: PagerDutyStub, key: str = KEY) -> Any:
    return await make_bot(
        alert_webhook_token=TOKEN, pagerduty_routing_key=key, pagerduty_url=pagerduty.url
    )


async def the_incident(redis: aioredis.Redis, prefix: str) -> tuple[str, dict[str, str]]:
    keys = await wait_until(lambda: redis.keys(f"{prefix}-state:incident:*"))
    [key] = keys
    iid = str(key).rsplit(":", 1)[1]
    return iid, {str(k): str(v) for k, v in (await redis.hgetall(key)).items()}


async def test_a_critical_alert_pages_once_across_resends_and_replicas_then_resolves(
    make_bot: MakeBot,
    slack: SlackStub,
    pagerduty: PagerDutyStub,
    redis: aioredis.Redis,
    prefix: str,
) -> None:
    one, two = await paging_bot(make_bot, pagerduty), await paging_bot(make_bot, pagerduty)
    critical = {**ALERT, "labels": {"severity": "critical"}, "summary": "depth 5000 " + "x" * 1989}
    await asyncio.gather(post(one, critical), post(two, critical))  # two replicas at once
    await wait_until(lambda: asyncio.sleep(0, pagerduty.of("trigger")))
    iid, incident = await the_incident(redis, prefix)
    [trigger] = pagerduty.of("trigger")
    assert trigger["dedup_key"] == iid
    assert incident["severity"] == "sev1" and incident["page_status"] == "trigger"
    assert incident["paged_at"]
    payload = trigger["payload"]
    assert payload["severity"] == "critical" and payload["component"] == "batch-jobs"
    assert payload["summary"].startswith("[sev1] QueueBacklog on batch-jobs: depth 5000 xx")
    assert len(payload["summary"]) == 1024  # PagerDuty's limit
    assert trigger["links"][0]["href"] == "https://slack.com/app_redirect?channel=C0INC1"
    assert payload["custom_details"]["incident"] == iid
    await slack.wait_for("pins.add")  # the channel opened as without paging

    for bot in (one, two, one):  # Alertmanager's repeats, landing on either replica
        await post(bot, critical)
    three = await paging_bot(make_bot, pagerduty)  # a restart
    await post(three, critical)
    await asyncio.sleep(0.5)
    assert len(pagerduty.of("trigger")) == 1 and pagerduty.requests == 1
    assert len(slack.of("conversations.create")) == 1

    await post(three, {**ALERT, "status": "resolved"})
    [resolved] = await wait_until(lambda: asyncio.sleep(0, pagerduty.of("resolve")))
    assert resolved["dedup_key"] == iid and "payload" not in resolved
    await post(one, {**ALERT, "status": "resolved"})  # a repeat of the resolve
    await asyncio.sleep(0.3)
    assert len(pagerduty.of("resolve")) == 1 and pagerduty.refused == []
    texts = [e["text"] for e in await _timeline(redis, prefix, iid)]
    assert "PagerDuty: paged (sev1)" in texts and "PagerDuty: page resolved" in texts


async def _timeline(redis: aioredis.Redis, prefix: str, iid: str) -> list[dict[str, Any]]:
    return [json.loads(e) for e in await redis.lrange(f"{prefix}-state:timeline:{iid}", 0, -1)]


async def test_below_page_severity_nobody_is_paged(
    make_bot: MakeBot,
    slack: SlackStub,
    pagerduty: PagerDutyStub,
    redis: aioredis.Redis,
    prefix: str,
) -> None:
    bot = await paging_bot(make_bot, pagerduty)
    await post(bot, {**ALERT, "labels": {"severity": "warning"}})
    await slack.wait_for("pins.add")
    _, incident = await the_incident(redis, prefix)
    await post(bot, {**ALERT, "status": "resolved"})
    await slack.wait_for("chat.postMessage", 3)  # resolution and postmortem
    assert incident["severity"] == "sev3" and "paged_at" not in incident
    assert pagerduty.requests == 0
    assert [severity_of_labels({"severity": s}) for s in ("critical", "HIGH", "error", "")] == [
        "sev1",
        "sev2",
        "sev2",
        "sev3",
    ]


async def test_pagerduty_failing_twice_is_retried_and_the_channel_opens_regardless(
    make_bot: MakeBot, slack: SlackStub, pagerduty: PagerDutyStub
) -> None:
    pagerduty.fail = [500, 429]
    bot = await paging_bot(make_bot, pagerduty)
    await post(bot, {**ALERT, "labels": {"severity": "error"}})  # sev2, the default threshold
    await slack.wait_for("pins.add")
    await wait_until(lambda: asyncio.sleep(0, pagerduty.of("trigger")))
    assert pagerduty.requests == 3 and len(pagerduty.events) == 1
    await asyncio.sleep(0.2)
    assert len(slack.of("chat.postMessage")) == 1  # the status message; no failure line


async def test_a_refused_key_is_one_line_in_the_channel_and_the_key_is_nowhere(
    make_bot: MakeBot,
    slack: SlackStub,
    pagerduty: PagerDutyStub,
    redis: aioredis.Redis,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "R0WRONGKEYWRONGKEYWRONGKEY012345"
    bot = await paging_bot(make_bot, pagerduty, key=wrong)
    critical = {**ALERT, "labels": {"severity": "critical"}}
    await post(bot, critical)
    posts = await slack.wait_for("chat.postMessage", 2)
    line = posts[1].body["text"]
    assert line.startswith(":warning: PagerDuty refused the trigger: HTTP 400") and "\n" not in line
    assert "<routing key>" in line and "check PAGERDUTY_ROUTING_KEY" in line
    await slack.wait_for("pins.add")  # the incident went on
    assert pagerduty.requests == 1  # a refusal is not retried at once

    await post(bot, critical)  # the next notification tries again, without a second line
    await wait_until(lambda: asyncio.sleep(0, pagerduty.requests == 2))
    await asyncio.sleep(0.3)
    assert len(slack.of("chat.postMessage")) == 2

    iid, incident = await the_incident(redis, prefix)
    audit = await redis.xrange(f"{prefix}-state:audit")
    everywhere = [
        *(json.dumps(c.body) + json.dumps(c.headers) for c in slack.calls),
        json.dumps(audit, default=str),
        json.dumps(incident),
        json.dumps(await _timeline(redis, prefix, iid)),
        caplog.text,
    ]
    assert "PagerDuty refused the trigger" in incident["page_error"]
    assert not [text for text in everywhere if wrong in text]


async def test_a_page_after_an_outage_is_retried_in_the_background_then_acknowledged(
    slack: SlackStub,
    pagerduty: PagerDutyStub,
    redis: aioredis.Redis,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Incidents as the coming "take the lead" feature will call it: `acknowledge`."""
    monkeypatch.setattr(channels, "PAGE_RETRY_S", (0.3,))
    pagerduty.fail = [503, 503]
    pager = PagerDutyPager(KEY, url=pagerduty.url, attempts=2, backoff_s=0.05)

    async def no_snapshot(_: Any) -> list[Any]:
        return []

    incidents = Incidents(
        redis,
        AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url),
        state_prefix=f"{prefix}-state",
        snapshot_view=no_snapshot,
        pager=pager,
        page_severity="sev3",
    )
    from bot.alerts.models import AlertEvent

    event = AlertEvent.model_validate(
        {
            "source": "generic",
            "group_key": "generic:pd-2",
            "status": "firing",
            "title": "Stuck",
            "queues": ["q"],
            "starts_at": "2026-11-23T07:00:00Z",
        }
    )
    try:
        await incidents.handle(event)  # PagerDuty down for both of the pager's tries
        posts = slack.of("chat.postMessage")
        assert "did not take the trigger after 2 tries: HTTP 503" in posts[1].body["text"]
        await wait_until(lambda: asyncio.sleep(0, pagerduty.of("trigger")), within=3)
        await slack.wait_for("chat.postMessage", 3)
        assert (
            slack.of("chat.postMessage")[2].body["text"] == "PagerDuty took the trigger after all."
        )
        iid, _ = await the_incident(redis, prefix)
        await incidents.acknowledge(iid, by="UOPS")
        await incidents.acknowledge(iid, by="UOTHER")  # a hand-over: acknowledged already
        assert [e["event_action"] for e in pagerduty.events] == ["trigger", "acknowledge"]
        assert pagerduty.events[1]["dedup_key"] == iid
    finally:
        await incidents.close()
        await pager.aclose()
