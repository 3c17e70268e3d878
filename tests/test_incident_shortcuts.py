"""Issue 15, sections 1 and 8: the message shortcuts "Declare queue incident" and "Add to
incident timeline", and `/queue incident convert`. Through the real app (Bolt over HTTP
with signed requests, as Slack sends message_action and view_submission payloads), the
Slack Web API stand-in and real Redis; the manifest's shortcuts are each driven as
test_slack.py drives its slash command."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import redis.asyncio as aioredis
from aiohttp import ClientResponse
from slack_helpers import MakeBot, press, sign, slash
from slack_stub import SlackStub
from test_incident_lifecycle import said, text_of
from test_slack import load_manifest

from bot.queues.service import QueueService

MESSAGE_TS = "1700000123.000200"
PERMALINK = "https://example.slack.com/archives/C0GENERAL/p1700000123000200"


def message_action(
    callback_id: str, *, user: str, channel: str, text: str, reply_to: str
) -> dict[str, Any]:
    """A message shortcut's payload, as Slack sends it."""
    return {
        "type": "message_action",
        "callback_id": callback_id,
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "team": {"id": "T0001", "domain": "example"},
        "user": {"id": user, "name": user.lower()},
        "channel": {"id": channel, "name": "general"},
        "message": {"type": "message", "user": "UAUTHOR", "ts": MESSAGE_TS, "text": text},
        "message_ts": MESSAGE_TS,
        "response_url": f"{reply_to}",
        "token": "legacy",
        "action_ts": "1700000200.000000",
    }


async def post_payload(bot: Any, payload: dict[str, Any]) -> ClientResponse:
    body = urlencode({"payload": json.dumps(payload)})
    resp: ClientResponse = await bot.post("/slack/events", data=body, headers=sign(body))
    return resp


async def shortcut(
    bot: Any,
    slack: SlackStub,
    callback_id: str,
    *,
    user: str = "UOPS",
    channel: str = "C0GENERAL",
    text: str = "checkout emails stuck since 14:05\nsee graph",
    reply_to: str = "s1",
) -> ClientResponse:
    payload = message_action(
        callback_id, user=user, channel=channel, text=text, reply_to=slack.response_url(reply_to)
    )
    return await post_payload(bot, payload)


async def submit(
    bot: Any, view: dict[str, Any], values: dict[str, Any], *, user: str = "UOPS"
) -> ClientResponse:
    """Submit the dialog `view` (as views.open sent it) with these state values."""
    payload = {
        "type": "view_submission",
        "team": {"id": "T0001", "domain": "example"},
        "user": {"id": user, "name": user.lower()},
        "api_app_id": "A1",
        "token": "legacy",
        "trigger_id": "1.2.3",
        "view": {
            "id": "V0001",
            "type": "modal",
            "callback_id": view["callback_id"],
            "private_metadata": view.get("private_metadata", ""),
            "state": {"values": values},
            "hash": "1.abc",
        },
    }
    return await post_payload(bot, payload)


def declare_values(title: str, queue: str | None = None, severity: str = "sev2") -> dict[str, Any]:
    return {
        "title": {"value": {"type": "plain_text_input", "value": title}},
        "queue": {"value": {"type": "plain_text_input", "value": queue}},
        "severity": {
            "value": {
                "type": "static_select",
                "selected_option": {
                    "value": severity,
                    "text": {"type": "plain_text", "text": severity},
                },
            }
        },
    }


def opened_view(slack: SlackStub, n: int = -1) -> dict[str, Any]:
    view = slack.of("views.open")[n].body["view"]
    return json.loads(view) if isinstance(view, str) else dict(view)


async def test_every_manifest_shortcut_has_a_handler(make_bot: MakeBot, slack: SlackStub) -> None:
    shortcuts = load_manifest()["features"]["shortcuts"]
    assert {s["callback_id"] for s in shortcuts} == {
        "declare_queue_incident",
        "add_to_incident_timeline",
    }
    assert all(s["type"] == "message" for s in shortcuts)
    bot = await make_bot()
    for n, each in enumerate(shortcuts):
        resp = await shortcut(bot, slack, each["callback_id"], reply_to=f"m{n}")
        assert resp.status == 200
    # Declare asks in a dialog; with no open incident, the timeline says so in one line.
    await slack.wait_for("views.open")
    assert opened_view(slack)["callback_id"] == "declare_queue_incident_modal"
    none_open = await said(slack, "respond:m1", "no open incident")
    assert none_open.body["response_type"] == "ephemeral"


async def test_declare_by_shortcut_links_and_quotes_the_message_and_is_one_incident(
    make_bot: MakeBot, slack: SlackStub, service: QueueService, redis: aioredis.Redis, prefix: str
) -> None:
    slack.responses["chat.getPermalink"] = {"ok": True, "permalink": PERMALINK}
    await service.store.bullmq(service.ref("batch-jobs")).add("email", {"i": 1})
    bot = await make_bot()
    text = "checkout emails stuck <!channel>\nsecond line"
    assert (await shortcut(bot, slack, "declare_queue_incident", text=text)).status == 200
    await slack.wait_for("views.open")
    view = opened_view(slack)
    title_input = view["blocks"][0]["element"]
    assert title_input["initial_value"] == "checkout emails stuck <!channel>"

    # Checked before the dialog closes: an unknown queue, an empty title.
    bad = await submit(bot, view, declare_values("stuck", "nope"))
    assert (await bad.json())["errors"]["queue"].startswith("unknown queue 'nope'")
    empty = await submit(bot, view, declare_values("  "))
    assert "title" in (await empty.json())["errors"]
    assert not slack.of("conversations.create")

    ok = await submit(bot, view, declare_values("Checkout emails stuck", "batch-jobs", "sev1"))
    assert ok.status == 200
    [created] = await slack.wait_for("conversations.create")
    assert created.body["name"].endswith("-checkout-emails-stuck-batch-jobs")
    channel = "C0INC1"
    asked = await said(slack, "chat.postMessage", "declared this incident", channel=channel)
    shown = text_of(asked.body)
    assert f"From <{PERMALINK}|a message> by <@UAUTHOR> in <#C0GENERAL>" in shown
    assert "> checkout emails stuck &lt;!channel&gt;" in shown and "<!channel>" not in shown
    invited = await said(slack, "conversations.invite", "", channel=channel)
    assert invited.body["users"] == "UOPS"  # the declarer is in the new channel at once
    told = await said(slack, "chat.postEphemeral", "declared a sev1 incident", user="UOPS")
    assert told.body["channel"] == "C0GENERAL"
    status = await said(slack, "chat.postMessage", "Checkout emails stuck on batch-jobs")
    assert f"<{PERMALINK}|source>" in text_of(status.body)

    # The same message again (submitted twice, or by someone else): the same incident.
    again = await submit(bot, view, declare_values("Checkout emails stuck", "batch-jobs", "sev1"))
    assert again.status == 200
    await said(slack, "chat.postEphemeral", "declared already", user="UOPS")
    assert len(slack.of("conversations.create")) == 1
    iid = str(await redis.get(f"{prefix}-state:channel:{channel}"))
    timeline = [
        json.loads(e)["text"] for e in await redis.lrange(f"{prefix}-state:timeline:{iid}", 0, -1)
    ]
    assert any("declared by slack:UOPS (sev1) from a message: checkout" in t for t in timeline)
    audit = [row[1] for row in await redis.xrange(f"{prefix}-state:audit")]
    assert any("[shortcut] incident declare" in v for row in audit for v in row.values())


async def test_shortcuts_are_an_operators_move(make_bot: MakeBot, slack: SlackStub) -> None:
    bot = await make_bot()
    for n, callback in enumerate(("declare_queue_incident", "add_to_incident_timeline")):
        await shortcut(bot, slack, callback, user="UVIEW", reply_to=f"v{n}")
        refused = await said(slack, f"respond:v{n}", "needs the operator role")
        assert refused.body["response_type"] == "ephemeral"
    assert not slack.of("views.open")
    # A dialog opened while they were an operator is checked again on submit.
    view = {"callback_id": "declare_queue_incident_modal", "private_metadata": "{}"}
    resp = await submit(bot, view, declare_values("x"), user="UVIEW")
    assert "operator role" in (await resp.json())["errors"]["title"]


async def test_add_to_timeline_in_the_channel_and_from_elsewhere(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    slack.responses["chat.getPermalink"] = {"ok": True, "permalink": PERMALINK}
    bot = await make_bot()
    await slash(bot, slack, 'incident declare "OCR backlog"', user="UOPS", reply_to="d1")
    await said(slack, "respond:d1", "declared a")
    channel = "C0INC1"
    state = f"{prefix}-state"
    iid = str(await redis.get(f"{state}:channel:{channel}"))

    # In the incident's own channel: added at once, at the message's own time.
    await shortcut(
        bot, slack, "add_to_incident_timeline", channel=channel, text="restarted ocr-worker-2"
    )
    await said(slack, "respond:s1", "added to this incident's timeline")
    entries = [json.loads(e) for e in await redis.lrange(f"{state}:timeline:{iid}", 0, -1)]
    added = [e for e in entries if "restarted ocr-worker-2" in e["text"]]
    assert len(added) == 1 and added[0]["at_ms"] == 1700000123000
    assert "slack:UAUTHOR said: restarted ocr-worker-2" in added[0]["text"]
    assert PERMALINK in added[0]["text"] and "added by slack:UOPS" in added[0]["text"]

    # From another channel: pick the incident in a dialog.
    await shortcut(bot, slack, "add_to_incident_timeline", text="db cpu at 95%", reply_to="s2")
    await slack.wait_for("views.open")
    view = opened_view(slack)
    options = view["blocks"][0]["element"]["options"]
    assert [o["value"] for o in options] == [iid]
    assert options[0]["text"]["text"] == "[sev2] OCR backlog"
    picked = {
        "incident": {
            "value": {"type": "static_select", "selected_option": {"value": iid}},
        }
    }
    assert (await submit(bot, view, picked)).status == 200
    await said(slack, "chat.postMessage", "to the timeline", channel=channel)
    entries = [json.loads(e) for e in await redis.lrange(f"{state}:timeline:{iid}", 0, -1)]
    assert any("db cpu at 95%" in e["text"] for e in entries)
    gone = {"incident": {"value": {"type": "static_select", "selected_option": {"value": "x-1"}}}}
    assert (await (await submit(bot, view, gone)).json())["errors"]["incident"] == (
        "that incident is gone"
    )


async def test_convert_makes_the_channel_the_incidents_once(
    make_bot: MakeBot, slack: SlackStub, service: QueueService, redis: aioredis.Redis, prefix: str
) -> None:
    await service.store.bullmq(service.ref("ocr")).add("scan", {"page": 1})
    slack.responses["conversations.info"] = {
        "ok": True,
        "channel": {"id": "C0OPS", "name": "ops-war-room", "is_member": False},
    }
    bot = await make_bot(incident_archive_after_ms=60_000)
    await slash(
        bot, slack, "incident convert --queue ocr --severity sev3", user="UOPS", channel="C0OPS"
    )
    reply = await said(slack, "respond:r1", "this channel is now the sev3 incident's")
    assert reply.body["response_type"] == "in_channel"
    await slack.wait_for("conversations.join")
    status = await said(slack, "chat.postMessage", "#ops-war-room on ocr", channel="C0OPS")
    assert "waiting 1" in text_of(status.body)
    await said(slack, "pins.add", "", channel="C0OPS")
    topics = [c for c in slack.of("conversations.setTopic") if c.body["channel"] == "C0OPS"]
    assert topics and "FIRING" in topics[-1].body["topic"]
    assert not slack.of("conversations.create")
    await said(
        slack, "chat.postMessage", "converted this channel into an incident", channel="C0OPS"
    )

    state = f"{prefix}-state"
    iid = str(await redis.get(f"{state}:channel:C0OPS"))
    assert await redis.hget(f"{state}:incident:{iid}", "channel_id") == "C0OPS"

    # Converting again: the same incident. The incident commands work here now.
    await slash(bot, slack, "incident convert", user="UOPS", channel="C0OPS", reply_to="r2")
    await said(slack, "respond:r2", f"this channel runs incident {iid} already")
    await slash(
        bot, slack, 'incident update "ocr scaled"', user="UOPS", channel="C0OPS", reply_to="r3"
    )
    await said(slack, "chat.postMessage", "ocr scaled", channel="C0OPS")

    # Resolved: people's own channel is never archived.
    await press(
        bot, slack, "incident_resolve", f"{iid}|ocr", user="UOPS", reply_to="p1", channel="C0OPS"
    )
    await said(slack, "chat.postMessage", "resolved", channel="C0OPS")
    assert await redis.zcard(f"{state}:archive") == 0


async def test_convert_refusals_are_one_line(make_bot: MakeBot, slack: SlackStub) -> None:
    bot = await make_bot()
    await slash(bot, slack, "incident convert", user="UOPS", channel="D0DIRECT", reply_to="d")
    await said(slack, "respond:d", "a direct message cannot be an incident channel")
    slack.responses["conversations.info"] = {"ok": False, "error": "channel_not_found"}
    await slash(bot, slack, "incident convert", user="UOPS", channel="G0SECRET", reply_to="p")
    private = await said(slack, "respond:p", "invite it first (/invite @queueops)")
    assert private.body["response_type"] == "ephemeral"
    await slash(bot, slack, "incident convert", user="UVIEW", channel="C0OPS", reply_to="v")
    await said(slack, "respond:v", "needs the operator role")
    assert not slack.of("chat.postMessage")


async def test_a_dialog_slack_will_not_open_is_one_line(
    make_bot: MakeBot, slack: SlackStub
) -> None:
    slack.responses["views.open"] = {"ok": False, "error": "expired_trigger_id"}
    bot = await make_bot()
    await shortcut(bot, slack, "declare_queue_incident", reply_to="e1")
    told = await said(slack, "respond:e1", "Slack did not open the dialog (expired_trigger_id)")
    assert told.body["response_type"] == "ephemeral"
    payload = message_action(
        "declare_queue_incident",
        user="UOPS",
        channel="C0GENERAL",
        text="x" * 50_000,
        reply_to=slack.response_url("e2"),
    )
    del payload["trigger_id"]
    assert (await post_payload(bot, payload)).status == 200
    await said(slack, "respond:e2", "no trigger_id in the request")


def test_the_message_rides_in_the_dialog_within_slacks_3000_characters() -> None:
    from bot.incidents.desk import SourceMessage
    from bot.incidents.shortcuts import METADATA_MAX, metadata_of, source_from_metadata

    for text in ("\u2603" * 1500, '"\\' * 750, "<!channel> " * 150):
        source = SourceMessage(
            channel="C1", ts=MESSAGE_TS, text=text, author="U1", permalink=PERMALINK
        )
        raw = metadata_of(source)
        assert len(raw) <= METADATA_MAX
        back, _ = source_from_metadata(raw)
        assert back.permalink == PERMALINK and text.startswith(back.text) and back.text


async def test_declare_again_after_slack_failed_half_way_resumes_the_same_incident(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    bot = await make_bot()
    slack.queued["chat.postMessage"] = [{"ok": False, "error": "service_unavailable"}]
    line = 'incident declare "Exports failing"'
    await slash(bot, slack, line, user="UOPS", reply_to="a")
    await said(
        slack, "respond:a", "Slack refused opening the incident channel: service_unavailable"
    )
    await slash(bot, slack, line, user="UOPS", reply_to="b")
    await said(slack, "respond:b", "declared a sev2 incident")
    await slash(bot, slack, "incident declare 'exports   FAILING'", user="UOPS", reply_to="c")
    await said(slack, "respond:c", "declared already")
    assert len(slack.of("conversations.create")) == 1  # one channel, resumed
    asks = [c for c in slack.of("chat.postMessage") if "declared this incident" in text_of(c.body)]
    assert len(asks) == 1
    # Someone else declaring the same words means a second incident.
    await slash(bot, slack, line, user="UADMIN", reply_to="d")
    await said(slack, "respond:d", "declared a sev2 incident")
    assert len(slack.of("conversations.create")) == 2


async def test_two_replicas_given_the_same_declaration_at_once_open_one_incident(
    make_bot: MakeBot, slack: SlackStub
) -> None:
    import asyncio

    one, two = await make_bot(), await make_bot()
    await shortcut(one, slack, "declare_queue_incident")
    await slack.wait_for("views.open")
    view = opened_view(slack)
    values = declare_values("Checkout emails stuck")
    first, second = await asyncio.gather(
        submit(one, view, values), submit(two, view, values, user="UADMIN")
    )
    assert first.status == second.status == 200
    await said(slack, "chat.postEphemeral", "declared a sev2 incident")
    await said(slack, "chat.postEphemeral", "declared already")
    assert len(slack.of("conversations.create")) == 1
    asks = [c for c in slack.of("chat.postMessage") if "declared this incident" in text_of(c.body)]
    assert len(asks) == 1


async def test_a_message_added_after_the_resolve_reaches_the_posted_postmortem(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    bot = await make_bot()
    await slash(bot, slack, 'incident declare "Late note"', user="UOPS", reply_to="d1")
    await said(slack, "respond:d1", "declared a")
    channel = "C0INC1"
    iid = str(await redis.get(f"{prefix}-state:channel:{channel}"))
    await press(
        bot, slack, "incident_resolve", f"{iid}|", user="UOPS", reply_to="p1", channel=channel
    )
    await slack.wait_for("files.completeUploadExternal")
    ts = await redis.hget(f"{prefix}-state:incident:{iid}", "postmortem_ts")
    await shortcut(
        bot, slack, "add_to_incident_timeline", channel=channel, text="root cause: a bad deploy"
    )
    edited = await said(slack, "chat.update", "root cause: a bad deploy", channel=channel)
    assert edited.body["ts"] == ts


async def test_convert_again_after_slack_failed_half_way_resumes_it(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    """The status message refused (Slack down a moment) after the channel was recorded as
    the incident's: converting again finishes that conversion, not "already"."""
    slack.responses["conversations.info"] = {
        "ok": True,
        "channel": {"id": "C0OPS", "name": "ops-war-room", "is_member": True},
    }
    slack.queued["chat.postMessage"] = [{"ok": False, "error": "service_unavailable"}]
    bot = await make_bot()
    await slash(bot, slack, "incident convert", user="UOPS", channel="C0OPS", reply_to="a")
    await said(slack, "respond:a", "Slack refused")
    await slash(bot, slack, "incident convert", user="UOPS", channel="C0OPS", reply_to="b")
    await said(slack, "respond:b", "this channel is now the sev2 incident's")
    await said(slack, "chat.postMessage", "#ops-war-room is firing", channel="C0OPS")
    await said(
        slack, "chat.postMessage", "converted this channel into an incident", channel="C0OPS"
    )
    await slash(bot, slack, "incident convert", user="UOPS", channel="C0OPS", reply_to="c")
    await said(slack, "respond:c", "this channel runs incident")


def test_dialog_metadata_that_is_not_ours_is_an_empty_message() -> None:
    from bot.incidents.shortcuts import source_from_metadata

    for raw in ("", "{nope", "[1, 2]", '"text"', "null"):
        source, _ = source_from_metadata(raw)
        assert source.text == "" and source.channel == "" and source.permalink is None
