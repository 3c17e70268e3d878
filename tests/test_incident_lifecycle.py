"""Issue 15, sections 1-3: declare an incident by /queue, lead it and hand it over, change
its severity, post updates mirrored to the stakeholders' channel. Through the real app
(Bolt over HTTP with signed requests), the Slack Web API stand-in and real Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
import redis.asyncio as aioredis
from alert_helpers import wait_until
from redis_for_tests import REDIS_URL
from slack_helpers import MakeBot, press, slash
from slack_stub import Call, SlackStub
from test_paging import KEY, PagerDutyStub

from bot.config import load_settings
from bot.dispatch import make_dispatcher
from bot.queues.service import QueueService
from bot.roles import Role
from commands.incident import NO_DESK, NOT_HERE
from commands.reply import ErrorReply

STAKEHOLDERS = "C0STAKE"


def text_of(body: dict[str, Any]) -> str:
    """What a call showed, blocks and text, with its non-ASCII as typed (·, →)."""
    blocks = body.get("blocks", [])
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return json.dumps(blocks, ensure_ascii=False) + str(body.get("text", ""))


async def said(slack: SlackStub, method: str, needle: str, **where: str) -> Call:
    """The first `method` call whose text or blocks contain `needle` (and whose body has
    the `where` values), once it has come."""

    async def found() -> Call | None:
        for call in slack.of(method):
            if needle in text_of(call.body) and all(
                call.body.get(k) == v for k, v in where.items()
            ):
                return call
        return None

    result: Call = await wait_until(found, within=8.0)
    return result


def action_ids(body: dict[str, Any]) -> set[str]:
    blocks = body["blocks"]
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return {e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]}


async def declare(bot: Any, slack: SlackStub, line: str, reply_to: str) -> tuple[str, str]:
    """Declare by slash command as an operator; (channel id, incident id)."""
    resp = await slash(bot, slack, line, user="UOPS", reply_to=reply_to, channel="C0GENERAL")
    assert resp.status == 200
    reply = await said(slack, f"respond:{reply_to}", "declared a")
    assert "incident" in text_of(reply.body)
    created = slack.of("conversations.create")[-1]
    channel = f"C0INC{len(slack.of('conversations.create'))}"
    return channel, created.body["name"]


async def test_declare_opens_a_channel_as_an_alert_does_then_lead_and_hand_over(
    make_bot: MakeBot, slack: SlackStub, service: QueueService, redis: aioredis.Redis, prefix: str
) -> None:
    await service.store.bullmq(service.ref("batch-jobs")).addBulk(
        [{"name": "email", "data": {"i": i}} for i in range(2)]
    )
    bot = await make_bot()
    channel, name = await declare(
        bot,
        slack,
        'incident declare "Checkout emails stuck" --queue batch-jobs --severity sev1',
        "d1",
    )
    # Named as alerts name them: inc-<yyyymmdd>-<hhmm>-<title and queue>.
    assert name.startswith("inc-") and name.endswith("-checkout-emails-stuck-batch-jobs")
    status = await said(slack, "chat.postMessage", "Checkout emails stuck on batch-jobs")
    await slack.wait_for("pins.add")
    assert status.body["channel"] == channel
    text = text_of(status.body)
    assert "waiting 2" in text and "Identify oldest pending job" in text  # snapshot, checklist
    assert "*sev1* · lead: nobody yet" in text
    assert {"incident_take_lead", "incident_checklist", "incident_resolve"} <= action_ids(
        status.body
    )
    topic = slack.of("conversations.setTopic")[0].body["topic"]
    assert topic == "[sev1] FIRING · lead: nobody yet · Checkout emails stuck on batch-jobs"
    asked = await said(slack, "chat.postMessage", "declared this incident", channel=channel)
    assert "<@UOPS>" in text_of(asked.body) and "incident_take_lead" in action_ids(asked.body)

    state = f"{prefix}-state"
    iid = str(await redis.get(f"{state}:channel:{channel}"))
    assert await redis.hget(f"{state}:incident:{iid}", "severity") == "sev1"

    await slash(bot, slack, "incident lead <@UANN>", user="UOPS", reply_to="l1", channel=channel)
    await said(slack, "chat.postMessage", "<@UANN> leads this incident", channel=channel)
    await said(slack, "chat.update", "lead: <@UANN>", channel=channel)
    # Taking the lead acknowledges the page (sent when a pager is configured).
    assert await redis.hget(f"{state}:incident:{iid}", "page_ack_by") == "UANN"

    await slash(
        bot,
        slack,
        'incident lead UBO --note "going off shift; consumers restarting"',
        user="UOPS",
        reply_to="l2",
        channel=channel,
    )
    await said(
        slack,
        "chat.postMessage",
        "<@UANN> handed over to <@UBO>: going off shift; consumers restarting",
        channel=channel,
    )
    await said(slack, "chat.update", "lead: <@UBO>", channel=channel)
    again = len(slack.of("chat.postMessage"))
    await slash(bot, slack, "incident lead <@UBO>", user="UOPS", reply_to="l3", channel=channel)
    assert "lead this incident already" in text_of((await said(slack, "respond:l3", "")).body)
    assert len(slack.of("chat.postMessage")) == again  # the same lead: nothing said again

    timeline = [json.loads(e)["text"] for e in await redis.lrange(f"{state}:timeline:{iid}", 0, -1)]
    assert any("declared by slack:UOPS (sev1)" in t for t in timeline)
    assert any("UANN took the lead" in t for t in timeline)
    assert any("handed over from UANN to UBO: going off shift" in t for t in timeline)


async def test_take_the_lead_button_and_a_viewer_refused(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    bot = await make_bot()
    channel, _ = await declare(bot, slack, 'incident declare "Payments slow"', "d1")
    iid = str(await redis.get(f"{prefix}-state:channel:{channel}"))

    await press(
        bot, slack, "incident_take_lead", f"{iid}|", user="UVIEW", reply_to="p1", channel=channel
    )
    refused = await said(slack, "chat.postEphemeral", "needs the operator role")
    assert refused.body["user"] == "UVIEW"
    assert not await redis.hget(f"{prefix}-state:incident:{iid}", "lead")

    await slash(bot, slack, 'incident update "x"', user="UVIEW", reply_to="v1", channel=channel)
    assert "needs the operator role" in text_of((await said(slack, "respond:v1", "")).body)

    await press(
        bot, slack, "incident_take_lead", f"{iid}|", user="UOPS", reply_to="p2", channel=channel
    )
    await said(slack, "chat.postMessage", "<@UOPS> leads this incident", channel=channel)
    update = await said(slack, "chat.update", "lead: <@UOPS>", channel=channel)
    assert "incident_take_lead" not in action_ids(update.body)  # led: the button is gone


async def test_severity_and_updates_mirrored_in_one_message_edited_in_place(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    bot = await make_bot(incident_updates_channel=STAKEHOLDERS)
    channel, _ = await declare(bot, slack, 'incident declare "Exports failing"', "d1")
    state = f"{prefix}-state"
    iid = str(await redis.get(f"{state}:channel:{channel}"))

    await slash(bot, slack, "incident severity sev1", user="UOPS", reply_to="s1", channel=channel)
    await said(slack, "chat.postMessage", "from sev2 to *sev1*", channel=channel)
    await said(slack, "chat.update", "*sev1* · lead", channel=channel)
    assert "sev2 → sev1" in text_of((await said(slack, "respond:s1", "")).body)

    await slash(
        bot,
        slack,
        'incident update "consumers scaled to 8"',
        user="UOPS",
        reply_to="u1",
        channel=channel,
    )
    await said(slack, "chat.postMessage", "consumers scaled to 8", channel=channel)
    first = await said(slack, "chat.postMessage", "consumers scaled to 8", channel=STAKEHOLDERS)
    assert "[sev1] Exports failing" in first.body["text"]
    await said(slack, "chat.update", ":mega: consumers scaled to 8", channel=channel)
    ts = await redis.hget(f"{state}:incident:{iid}", "mirror_ts")
    assert ts

    await slash(
        bot,
        slack,
        'incident update "backlog falling, ETA 10 min"',
        user="UOPS",
        reply_to="u2",
        channel=channel,
    )
    edited = await said(slack, "chat.update", "backlog falling", channel=STAKEHOLDERS)
    assert edited.body["ts"] == ts
    assert len([c for c in slack.of("chat.postMessage") if c.body["channel"] == STAKEHOLDERS]) == 1
    status = await said(slack, "chat.update", ":mega: backlog falling", channel=channel)
    assert "consumers scaled to 8" not in text_of(status.body)  # the update line is replaced
    assert "stakeholders" in text_of((await said(slack, "respond:u2", "")).body)

    timeline = [json.loads(e)["text"] for e in await redis.lrange(f"{state}:timeline:{iid}", 0, -1)]
    assert any("severity sev2 → sev1" in t for t in timeline)
    assert any("update by slack:UOPS: consumers scaled to 8" in t for t in timeline)
    assert any("update by slack:UOPS: backlog falling" in t for t in timeline)

    await slash(bot, slack, 'incident update "x"', user="UOPS", reply_to="n1", channel="C0RANDOM")
    assert NOT_HERE in text_of((await said(slack, "respond:n1", "")).body)

    slack.queued["chat.postMessage"] = [{"ok": False, "error": "is_archived"}]
    await slash(bot, slack, 'incident update "y"', user="UOPS", reply_to="e1", channel=channel)
    refused = text_of((await said(slack, "respond:e1", "")).body)
    assert "Slack refused the update: is_archived" in refused and "internal" not in refused


@pytest_asyncio.fixture
async def pager() -> AsyncIterator[PagerDutyStub]:
    """PagerDuty's Events API v2 on loopback (tests/test_paging.py's stand-in)."""
    stub = PagerDutyStub()
    await stub.start()
    yield stub
    assert stub.server is not None
    await stub.server.close()


def sent(pager: PagerDutyStub, action: str) -> Any:
    async def check() -> list[dict[str, Any]]:
        return pager.of(action)

    return check


async def test_raising_the_severity_pages_and_taking_the_lead_acknowledges(
    make_bot: MakeBot,
    slack: SlackStub,
    pager: PagerDutyStub,
    redis: aioredis.Redis,
    prefix: str,
) -> None:
    bot = await make_bot(pagerduty_routing_key=KEY, pagerduty_url=pager.url)
    channel, _ = await declare(bot, slack, 'incident declare "Reports late" --severity sev3', "d1")
    iid = str(await redis.get(f"{prefix}-state:channel:{channel}"))
    assert pager.events == []  # sev3 is below PAGE_SEVERITY (sev2)

    await slash(bot, slack, "incident severity sev1", user="UOPS", reply_to="s1", channel=channel)
    [trigger] = await wait_until(sent(pager, "trigger"))
    assert trigger["dedup_key"] == iid and trigger["payload"]["severity"] == "critical"

    await slash(bot, slack, "incident lead <@UANN>", user="UOPS", reply_to="l1", channel=channel)
    [acked] = await wait_until(sent(pager, "acknowledge"))
    assert acked["dedup_key"] == iid
    assert pager.refused == []


async def test_without_slack_each_incident_command_is_one_line(
    redis: aioredis.Redis, prefix: str
) -> None:
    settings = load_settings(redis_url=REDIS_URL, prefix=prefix, state_prefix=f"{prefix}-state")
    dispatcher = make_dispatcher(redis, settings, rate_limited=False, metrics=False)
    for line in (
        ["incident", "declare", "db down"],
        ["incident", "lead", "U123"],
        ["incident", "severity", "sev1"],
        ["incident", "update", "scaled"],
    ):
        outcome = await dispatcher.run(line, actor="cli:test", role=Role.ADMIN, transport="cli")
        assert isinstance(outcome.reply, ErrorReply), line
        assert outcome.reply.message == NO_DESK and outcome.reply.exit_code == 1


async def test_a_depth_chart_slack_refuses_never_holds_the_incident_up(
    make_bot: MakeBot, slack: SlackStub, service: QueueService, redis: aioredis.Redis, prefix: str
) -> None:
    """The chart is drawn (two depth samples in the last hour), its upload refused (the
    files:write scope missing): the incident opens all the same, the refusal recorded."""
    import time

    await service.store.bullmq(service.ref("q")).add("pdf", {})
    now = int(time.time() * 1000)
    await redis.lpush(f"{prefix}-state:depth:{prefix}:q", f"{now - 120_000}:3", f"{now}:9")
    slack.responses["files.getUploadURLExternal"] = {"ok": False, "error": "missing_scope"}
    bot = await make_bot()
    channel, _ = await declare(bot, slack, 'incident declare "Charted" --queue q', "d1")
    await slack.wait_for("files.getUploadURLExternal")
    iid = str(await redis.get(f"{prefix}-state:channel:{channel}"))

    async def recorded() -> str | None:
        found = await redis.hget(f"{prefix}-state:incident:{iid}", "chart_done")
        return str(found) if found else None

    assert await wait_until(recorded, within=8.0) == "refused: missing_scope"
    await said(slack, "chat.postMessage", "declared this incident", channel=channel)
