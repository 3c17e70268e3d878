"""Alerts open incident channels: intake, durability, dedup, resolve, Slack failures.
The real app, a Slack stand-in, real Redis; Alertmanager's own payloads from shared/."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from slack_helpers import MakeBot, text_of
from slack_stub import SlackStub

from bot.queues.service import QueueService

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "alertmanager"
TOKEN = "example-token"
CHANNEL_NAME = "inc-20261123-0639-queuebacklog-batch-jobs"


def fixture(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / name).read_text())["body"]
    return body


async def post(
    bot: Any, body: Any, *, path: str = "/alerts/alertmanager", token: str | None = TOKEN
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    resp = await bot.post(path, data=data, headers={**headers, "Content-Type": "application/json"})
    return resp.status, await resp.json()


async def settle(slack: SlackStub, seconds: float = 0.3) -> None:
    """Let the worker finish what it is doing (it runs after intake answered)."""
    await asyncio.sleep(seconds)


async def test_an_alert_opens_one_channel_with_everything_then_resolves(
    make_bot: MakeBot, slack: SlackStub, service: QueueService
) -> None:
    await service.store.bullmq("batch-jobs").addBulk(
        [{"name": "render", "data": {"i": i}} for i in range(3)]
    )
    slack.group_members["S0ONCALL"] = [f"U{i:03d}" for i in range(31)]
    bot = await make_bot(alert_webhook_token=TOKEN, incident_invite="UIC01,S0ONCALL")

    status, body = await post(bot, fixture("firing.json"))
    assert status == 200 and body["ok"]
    [created] = await slack.wait_for("conversations.create")
    assert created.body["name"] == CHANNEL_NAME
    [first] = await slack.wait_for("chat.postMessage")
    await slack.wait_for("pins.add")
    text = text_of(first.body)
    assert "QueueBacklog on batch-jobs" in text and "batch-jobs backlog over 1000" in text
    assert "waiting 3" in text  # the snapshot of the queue the alert names
    assert "Identify oldest pending job" in text  # seed 002's checklist, as checkboxes
    kinds = {
        e["action_id"]
        for b in first.body["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    }
    assert {
        "incident_checklist",
        "incident_snapshot",
        "incident_pause",
        "incident_quarantine",
        "incident_resolve",
    } <= kinds
    topic = slack.of("conversations.setTopic")[0].body["topic"]
    assert topic.startswith("FIRING: QueueBacklog on batch-jobs")
    invited = [c.body["users"].split(",") for c in slack.of("conversations.invite")]
    assert [len(chunk) for chunk in invited] == [30, 2]  # 32 people, chunks of 30

    for _ in range(5):  # Alertmanager's repeat notifications
        assert (await post(bot, fixture("firing.json")))[0] == 200
    await settle(slack)
    assert len(slack.of("conversations.create")) == 1
    assert len(slack.of("chat.postMessage")) == 1
    assert len(slack.of("chat.update")) == 1  # at most once a minute

    bot2 = await make_bot(alert_webhook_token=TOKEN)  # a restart, or a second replica
    assert (await post(bot2, fixture("firing.json")))[0] == 200
    await settle(slack)
    assert len(slack.of("conversations.create")) == 1

    assert (await post(bot2, fixture("resolved.json")))[0] == 200
    posts = await slack.wait_for("chat.postMessage", 3)
    assert "Resolved" in text_of(posts[1].body) and "waiting 3" in text_of(posts[1].body)
    assert "Postmortem skeleton: QueueBacklog" in posts[2].body["text"]
    assert "QueueBacklog fired (alertmanager)" in posts[2].body["text"]
    topics = await slack.wait_for("conversations.setTopic", 2)
    assert topics[-1].body["topic"].startswith("RESOLVED")
    assert all(c.body["channel"] == "C0INC1" for c in posts)


async def test_intake_refuses_bad_input_with_the_right_status(
    make_bot: MakeBot, slack: SlackStub
) -> None:
    off = await make_bot()
    status, body = await post(off, fixture("firing.json"))
    assert status == 401 and "ALERT_WEBHOOK_TOKEN is not set" in body["error"]

    bot = await make_bot(alert_webhook_token=TOKEN)
    assert (await post(bot, fixture("firing.json"), token="wrong"))[0] == 401
    assert (await post(bot, fixture("firing.json"), token=None))[0] == 401
    status, body = await post(bot, "{not json")
    assert status == 400 and body["error"].startswith("malformed JSON")
    broken = fixture("firing.json")
    del broken["groupKey"]
    status, body = await post(bot, broken)
    assert (status, body["error"]) == (400, "groupKey: Field required")
    status, body = await post(bot, {**fixture("firing.json"), "version": "3"})
    assert status == 400 and body["error"].startswith("version:")
    status, _ = await post(bot, b"{" + b" " * 300_000 + b"}")
    assert status == 413
    status, body = await post(bot, {**fixture("firing.json"), "somethingNew": {"x": 1}})
    assert status == 200  # unknown fields are tolerated
    assert (await bot.get("/healthz")).status == 200


async def test_a_slack_outage_is_retried_from_the_stream_and_nothing_posts_twice(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    slack.queued["chat.postMessage"] = [
        web.Response(status=503, text="upstream down") for _ in range(20)
    ]
    bot = await make_bot(alert_webhook_token=TOKEN)
    assert (await post(bot, fixture("firing.json")))[0] == 200  # stored before Slack
    await slack.wait_for("chat.postMessage")
    await settle(slack, 1.5)  # slack_sdk's own retries, then the entry stays pending
    failed_tries = len(slack.of("chat.postMessage"))
    assert (await redis.xpending(f"{prefix}-state:alerts", "incidents"))["pending"] == 1
    assert len(slack.of("conversations.create")) == 1 and not slack.of("pins.add")

    slack.queued["chat.postMessage"].clear()  # Slack is back
    await make_bot(alert_webhook_token=TOKEN)  # a restart: the sweep at start retries
    await slack.wait_for("pins.add")
    await settle(slack)
    assert len(slack.of("conversations.create")) == 1  # resumed, not re-created
    assert len(slack.of("conversations.setTopic")) == 1  # done steps are not redone
    assert len(slack.of("chat.postMessage")) == failed_tries + 1
    pending = await redis.xpending(f"{prefix}-state:alerts", "incidents")
    assert pending["pending"] == 0


async def test_rate_limits_are_honoured(make_bot: MakeBot, slack: SlackStub) -> None:
    slack.queued["conversations.create"] = [
        web.json_response(
            {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"}
        )
    ]
    bot = await make_bot(alert_webhook_token=TOKEN)
    await post(bot, fixture("firing.json"))
    calls = await slack.wait_for("conversations.create", 2, within=5)
    assert calls[1].at - calls[0].at >= 0.9
    await slack.wait_for("pins.add")
    assert len(slack.of("chat.postMessage")) == 1


async def test_generic_alerts_and_the_timeline_of_commands_in_the_channel(
    make_bot: MakeBot, slack: SlackStub, service: QueueService
) -> None:
    await service.store.bullmq("dsar-jobs").add("export", {})
    bot = await make_bot(alert_webhook_token=TOKEN)
    alert = {
        "title": "DSAR stuck",
        "queue": "dsar-jobs",
        "summary": "no progress in 30 min",
        "fingerprint": "dsar-1",
        "startsAt": "2026-11-23T07:00:00Z",
    }
    status, _ = await post(bot, alert, path="/alerts/generic")
    assert status == 200
    [created] = await slack.wait_for("conversations.create")
    assert created.body["name"] == "inc-20261123-0700-dsar-stuck-dsar-jobs"
    await slack.wait_for("pins.add")

    from slack_helpers import slash

    await slash(bot, slack, "pause dsar-jobs", user="UOPS", channel="C0INC1")
    await slack.wait_for("respond:r1")
    status, _ = await post(bot, {**alert, "status": "resolved"}, path="/alerts/generic")
    posts = await slack.wait_for("chat.postMessage", 3)
    assert "slack:UOPS ran `pause dsar-jobs` → ok" in posts[2].body["text"]
    status, body = await post(bot, {"title": ""}, path="/alerts/generic")
    assert status == 400 and body["error"].startswith("title:")


async def test_incident_buttons_run_commands_as_the_presser_and_resolve_archives(
    make_bot: MakeBot,
    slack: SlackStub,
    service: QueueService,
    redis: aioredis.Redis,
    prefix: str,
) -> None:
    from slack_helpers import press, sign

    job = await service.store.bullmq("batch-jobs").add("render", {"doc": 9})
    bot = await make_bot(alert_webhook_token=TOKEN, incident_archive_after_ms=1)
    await post(bot, fixture("firing.json"))
    [first] = await slack.wait_for("chat.postMessage")
    buttons = {
        e["action_id"]: e["value"]
        for b in first.body["blocks"]
        if b["type"] == "actions"
        for e in b.get("elements", [])
        if "value" in e
    }

    async def click(action: str, user: str) -> None:
        payload_value = buttons[action]
        await press(bot, slack, action, payload_value, user=user, reply_to="x", channel="C0INC1")

    await click("incident_pause", "UVIEW")  # a viewer: refused, privately
    [refused] = await slack.wait_for("chat.postEphemeral")
    assert "needs the operator role" in refused.body["text"]
    await click("incident_pause", "UOPS")
    posts = await slack.wait_for("chat.postMessage", 2)
    assert "'batch-jobs' paused" in posts[1].body["text"]
    await service.resume("batch-jobs")

    await click("incident_quarantine", "UOPS")
    [opened] = await slack.wait_for("views.open")
    view = (
        json.loads(opened.body["view"])
        if isinstance(opened.body["view"], str)
        else opened.body["view"]
    )
    submission = {
        "type": "view_submission",
        "team": {"id": "T0001"},
        "user": {"id": "UOPS"},
        "api_app_id": "A1",
        "token": "legacy",
        "trigger_id": "1.2",
        "view": {
            **view,
            "id": "V1",
            "state": {
                "values": {
                    "job": {"value": {"type": "plain_text_input", "value": str(job.id)}},
                    "reason": {"value": {"type": "plain_text_input", "value": "poison pdf"}},
                }
            },
        },
    }
    from urllib.parse import urlencode

    body = urlencode({"payload": json.dumps(submission)})
    assert (await bot.post("/slack/events", data=body, headers=sign(body))).status == 200
    posts = await slack.wait_for("chat.postMessage", 3)
    assert "moved from 'batch-jobs'" in posts[2].body["text"]
    assert (await service.dlq_show("batch-jobs", str(job.id))).quarantine_reason == "poison pdf"

    await click("incident_resolve", "UOPS")
    posts = await slack.wait_for("chat.postMessage", 5)
    skeleton = posts[4].body["text"]
    assert "slack:UOPS ran `pause batch-jobs` → ok" in skeleton
    assert "slack:UOPS ran `quarantine batch-jobs" in skeleton
    assert "resolved by slack:UOPS" in skeleton
    await asyncio.sleep(0.01)  # INCIDENT_ARCHIVE_AFTER is 1 ms here
    from bot.http_app import TICKER

    await bot.app[TICKER].tick()  # the archiver rides on the tick
    [archived] = await slack.wait_for("conversations.archive")
    assert archived.body["channel"] == "C0INC1"
