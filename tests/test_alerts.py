"""Alerts open incident channels: intake, durability, dedup, resolve, Slack failures.
The real app, a Slack stand-in, real Redis; Alertmanager's own payloads from
tests/fixtures/alertmanager (see tests/fixtures/README.md)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from alert_helpers import chunked, raw_request, request_head, stored_event_json, wait_until
from slack_helpers import MakeBot, text_of
from slack_stub import SlackStub

from bot.queues.service import QueueService

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "alertmanager"
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
    await service.store.bullmq(service.ref("batch-jobs")).addBulk(
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
    assert "] FIRING · lead: nobody yet · QueueBacklog on batch-jobs" in topic
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
    assert posts[2].body["text"] == "Postmortem: QueueBacklog"
    assert "QueueBacklog fired (alertmanager)" in text_of(posts[2].body)
    topics = await slack.wait_for("conversations.setTopic", 2)
    assert "] RESOLVED · " in topics[-1].body["topic"]
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
    await service.store.bullmq(service.ref("dsar-jobs")).add("export", {})
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
    postmortem = json.dumps(posts[2].body["blocks"], ensure_ascii=False)
    assert "slack:UOPS ran `pause dsar-jobs` → ok" in postmortem
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

    job = await service.store.bullmq(service.ref("batch-jobs")).add("render", {"doc": 9})
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
    skeleton = json.dumps(posts[4].body["blocks"], ensure_ascii=False)  # the postmortem
    assert "slack:UOPS ran `pause batch-jobs` → ok" in skeleton
    assert "slack:UOPS ran `quarantine batch-jobs" in skeleton
    assert "resolved by slack:UOPS" in skeleton
    # The archive entry is written after the topic change and chat.update, and
    # INCIDENT_ARCHIVE_AFTER is 1 ms here: wait until it is there and due, then tick.
    archive = f"{prefix}-state:archive"
    await wait_until(lambda: redis.zcount(archive, "-inf", time.time() * 1000))
    from bot.http_app import TICKER

    await bot.app[TICKER].tick()  # the archiver rides on the tick
    [archived] = await slack.wait_for("conversations.archive")
    assert archived.body["channel"] == "C0INC1"


# -- issue 8: a 200 means the alert is kept until it is handled ---------------------------


def stream_key(prefix: str) -> str:
    return f"{prefix}-state:alerts"


async def test_a_body_split_across_tcp_reads_is_read_whole_and_over_the_limit_is_413(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    bot = await make_bot(alert_webhook_token=TOKEN)
    body = fixture("firing.json")
    body["commonAnnotations"]["description"] = "x" * 100_000  # a big, real-looking payload
    data = json.dumps(body).encode()
    pieces = [data[i : i + 20_000] for i in range(0, len(data), 20_000)]
    status, answer = await raw_request(
        bot.server.host,
        bot.server.port,
        request_head("/alerts/alertmanager", TOKEN, f"Content-Length: {len(data)}\r\n"),
        pieces,
    )
    assert (status, answer["ok"]) == (200, True)
    status, answer = await raw_request(
        bot.server.host,
        bot.server.port,
        request_head("/alerts/alertmanager", TOKEN, "Transfer-Encoding: chunked\r\n"),
        chunked(data, 30_000),
    )
    assert (status, answer["ok"]) == (200, True)
    stored = await redis.xrange(stream_key(prefix))
    assert [json.loads(f["event"])["title"] for _, f in stored] == ["QueueBacklog"] * 2

    too_big = b"[" + b" " * (300 * 1024) + b"]"
    status, answer = await raw_request(
        bot.server.host,
        bot.server.port,
        request_head("/alerts/alertmanager", TOKEN, "Transfer-Encoding: chunked\r\n"),
        chunked(too_big, 64 * 1024),
    )
    assert (status, answer["error"]) == (413, "body over 262144 bytes")
    assert await redis.xlen(stream_key(prefix)) == 2


async def test_unusable_start_times_and_deep_nesting_are_400_naming_the_field(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    bot = await make_bot(alert_webhook_token=TOKEN)
    for starts_at in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+01:00"):
        body = fixture("firing.json")
        body["alerts"][0]["startsAt"] = starts_at
        status, answer = await post(bot, body)
        assert status == 400 and answer["error"].startswith("alerts.0.startsAt: "), answer

    mixed = fixture("firing.json")
    naive = {**mixed["alerts"][0], "startsAt": "2026-11-23T06:40:00"}
    mixed["alerts"].append(naive)
    status, answer = await post(bot, mixed)
    assert (status, answer["error"]) == (
        400,
        "alerts.1.startsAt: Value error, needs a UTC offset, e.g. 2026-11-23T07:00:00Z",
    )
    status, answer = await post(
        bot, {"title": "t", "startsAt": "2026-11-23T07:00:00"}, path="/alerts/generic"
    )
    assert status == 400 and answer["error"].startswith("startsAt: ")

    deep = b'{"version": "4", "alerts": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    status, answer = await post(bot, deep)
    assert (status, answer["error"]) == (400, "malformed JSON: nested too deeply")
    assert await redis.xlen(stream_key(prefix)) == 0
    assert (await bot.get("/healthz")).status == 200


async def test_a_non_numeric_slack_timestamp_is_401_not_500(
    make_bot: MakeBot, slack: SlackStub
) -> None:
    from slack_helpers import sign

    bot = await make_bot()
    body = "command=%2Fqueue&text=help"
    for bad in ("abc", "", "1e9", "99999999999999999999999999"):
        headers = {**sign(body), "X-Slack-Request-Timestamp": bad}
        resp = await bot.post("/slack/events", data=body, headers=headers)
        assert resp.status == 401, (bad, resp.status)
    assert not slack.of("respond:r1")


async def pending_to_a_dead_consumer(redis: aioredis.Redis, key: str, events: list[str]) -> None:
    """Entries a crashed process read and never acked, as a restart finds them."""
    await redis.xgroup_create(key, "incidents", id="0", mkstream=True)
    async with redis.pipeline(transaction=False) as pipe:
        for event in events:
            pipe.xadd(key, {"event": event})
        await pipe.execute()
    await redis.xreadgroup("incidents", "dead-host-1", {key: ">"}, count=len(events))


async def test_poison_entries_are_parked_and_every_good_entry_gets_its_turn(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    key = stream_key(prefix)
    poison = [
        stored_event_json(f"P{i}", "9999-12-31T23:59:59-14:00", f"generic:poison-{i}")
        for i in range(120)
    ]
    poison += [
        stored_event_json("P-year-1", "0001-01-01T00:00:00+01:00", "generic:p1"),
        "{not json",
    ]
    good = [
        stored_event_json(f"Good {i}", "2026-11-23T07:00:00Z", f"generic:good-{i}")
        for i in range(3)
    ]
    await pending_to_a_dead_consumer(redis, key, [*poison, *good])

    bot = await make_bot(alert_webhook_token=TOKEN)  # the restart: its sweep takes them all
    created = await slack.wait_for("conversations.create", 3)
    assert sorted(c.body["name"] for c in created) == [
        f"inc-20261123-0700-good-{i}" for i in range(3)
    ]
    await wait_until(lambda: redis.xlen(f"{key}:dead"))
    await wait_until(lambda: _equals(redis.xlen(f"{key}:dead"), len(poison)))
    parked = await redis.xrange(f"{key}:dead", count=1)
    assert parked[0][1]["reason"].startswith("cannot be read: starts_at: ")
    await wait_until(lambda: _equals(redis_pending(redis, key), 0))

    ready = await (await bot.get("/readyz")).json()
    assert ready["ok"] and ready["alerts"] == f"{len(poison)} dead-lettered in {key}:dead"
    metrics = await (await bot.get("/metrics")).text()
    assert f"queueops_alerts_dead_lettered {float(len(poison))}" in metrics
    assert "queueops_alerts_unhandled 0.0" in metrics


async def _equals(value: Awaitable[Any], expected: Any) -> bool:
    return bool(await value == expected)


async def redis_pending(redis: aioredis.Redis, key: str) -> int:
    return int((await redis.xpending(key, "incidents"))["pending"])


async def test_an_entry_slack_keeps_refusing_is_parked_after_five_attempts(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    slack.responses["conversations.create"] = {"ok": False, "error": "restricted_action"}
    key = stream_key(prefix)
    await make_bot(alert_webhook_token=TOKEN)
    await post(await make_bot(alert_webhook_token=TOKEN), fixture("firing.json"))
    await slack.wait_for("conversations.create")
    for attempt in range(2, 6):  # each restart sweeps what is pending at once
        await make_bot(alert_webhook_token=TOKEN)
        await slack.wait_for("conversations.create", attempt)
    await wait_until(lambda: redis.xlen(f"{key}:dead"))
    [(_, parked)] = await redis.xrange(f"{key}:dead")
    assert parked["failures"] == "5" and "restricted_action" in parked["reason"]
    assert json.loads(parked["event"])["title"] == "QueueBacklog"
    assert await redis_pending(redis, key) == 0

    slack.responses.clear()
    slack.queued["chat.postMessage"] = [web.Response(status=503) for _ in range(3)]
    await post(
        await make_bot(alert_webhook_token=TOKEN),
        {"title": "Outage", "queue": "q"},
        path="/alerts/generic",
    )
    await slack.wait_for("chat.postMessage", 3)
    for _ in range(6):  # an outage is never counted against the entry
        await make_bot(alert_webhook_token=TOKEN)
    await wait_until(lambda: _equals(redis_pending(redis, key), 0), within=5)
    assert await redis.xlen(f"{key}:dead") == 1
    assert slack.of("pins.add")


async def test_unhandled_alerts_are_never_trimmed_and_over_the_bound_intake_is_503(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    from bot.alerts.models import AlertEvent, GenericAlert, from_generic
    from bot.alerts.stream import MAX_UNHANDLED, AlertStream, BacklogFull

    key = stream_key(prefix)
    stream = AlertStream(redis, key, consumer="slack-is-down")
    await stream.ensure_group()
    event: AlertEvent = from_generic(
        GenericAlert.model_validate({"title": "t", "startsAt": "2026-11-23T07:00:00Z"}),
        datetime.now(UTC),
    )
    # 10,500 alerts while Slack is down (read, never acked): the first 9,950 written at
    # once, the rest through the stream as intake does.
    async with redis.pipeline(transaction=False) as pipe:
        for _ in range(MAX_UNHANDLED - 50):
            pipe.xadd(key, {"event": event.model_dump_json()})
        accepted: list[str] = [str(i) for i in await pipe.execute()]
    refused = 0
    for _ in range(11):
        results = await asyncio.gather(
            *(stream.append(event) for _n in range(50)), return_exceptions=True
        )
        accepted += [r for r in results if isinstance(r, str)]
        refused += sum(isinstance(r, BacklogFull) for r in results)
        await stream.take_new(count=MAX_UNHANDLED)
    assert (len(accepted), refused) == (MAX_UNHANDLED, 500)
    kept = {entry_id for entry_id, _ in await redis.xrange(key)}
    assert kept == set(accepted)  # nothing accepted was trimmed

    # No Slack here: a worker would start handling the backlog at once.
    bot = await make_bot(alert_webhook_token=TOKEN, slack_bot_token=None)
    status, answer = await post(bot, fixture("firing.json"))
    assert status == 503 and answer["error"].startswith("10000 alerts are waiting")

    oldest_first = sorted(accepted, key=lambda i: tuple(int(n) for n in i.split("-")))
    handled = oldest_first[:3000]  # Slack is back for some of them
    await redis.xack(key, "incidents", *handled)
    await stream.append(event)  # trims what is handled, and only that
    left = {entry_id for entry_id, _ in await redis.xrange(key)}
    assert left >= set(accepted) - set(handled)
    assert not left & set(handled)


async def test_a_lock_left_by_a_dead_process_delays_the_incident_but_never_drops_it(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    from bot.alerts.models import AlertmanagerPayload, from_alertmanager

    # The first process opened the channel, then Slack failed under it (or it was killed)
    # in chat.postMessage: its entry is pending, and its lock has not expired yet.
    slack.queued["chat.postMessage"] = [web.Response(status=503) for _ in range(3)]
    bot = await make_bot(alert_webhook_token=TOKEN)
    assert (await post(bot, fixture("firing.json")))[0] == 200
    await slack.wait_for("chat.postMessage", 3)
    key = stream_key(prefix)
    await wait_until(lambda: redis_pending(redis, key))
    gid = from_alertmanager(AlertmanagerPayload.model_validate(fixture("firing.json"))).group_id
    await redis.set(f"{prefix}-state:lock:{gid}-1", "the-dead-process", px=1500)

    await make_bot(alert_webhook_token=TOKEN)  # the restart finds the dead process's lock
    posts = await slack.wait_for("chat.postMessage", 4, within=5)
    await slack.wait_for("pins.add")
    assert posts[-1].body["channel"] == "C0INC1"
    assert len(slack.of("conversations.create")) == 1
    await wait_until(lambda: _equals(redis_pending(redis, key), 0))


def generic_alert(title: str, fingerprint: str) -> dict[str, Any]:
    return {
        "title": title,
        "queue": "batch-jobs",
        "fingerprint": fingerprint,
        "startsAt": "2026-11-23T06:39:12Z",
    }


def group_event(alert: dict[str, Any]) -> dict[str, Any]:
    """The event /alerts/generic stores for `alert` (for its group id)."""
    return {
        "source": "generic",
        "group_key": f"generic:{alert['fingerprint']}",
        "status": "firing",
        "title": alert["title"],
        "starts_at": alert["startsAt"],
    }


def name_taken() -> dict[str, Any]:
    return {"ok": False, "error": "name_taken"}


async def test_two_groups_of_one_name_get_two_channels_and_a_persons_channel_is_left_alone(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    import re

    from bot.alerts.models import AlertEvent

    bot = await make_bot(alert_webhook_token=TOKEN)
    plain = "inc-20261123-0639-queuebacklog-batch-jobs"
    # A person made a channel of the very name the first group's incident will want.
    slack.queued["conversations.create"] = [name_taken()]
    slack.responses["conversations.list"] = {
        "ok": True,
        "channels": [{"id": "CPERSON", "name": plain, "creator": "UPERSON"}],
    }
    groups = [generic_alert("QueueBacklog", f"group-{n}") for n in range(2)]
    for body in groups:
        assert (await post(bot, body, path="/alerts/generic"))[0] == 200
        await wait_until(lambda: _equals(redis_pending(redis, stream_key(prefix)), 0))
    pins = await slack.wait_for("pins.add", 2)
    names = [c.body["name"] for c in slack.of("conversations.create")]
    gids = [AlertEvent.model_validate(group_event(g)).group_id for g in groups]
    assert names == [plain, f"{plain}-{gids[0][:6]}", f"{plain}-{gids[1][:6]}"]
    assert len({p.body["channel"] for p in pins}) == 2 and "CPERSON" not in {
        p.body["channel"] for p in pins
    }

    # Symbol-only and non-Latin titles: distinct, valid names.
    for n, title in enumerate(["🔥🔥🔥", "!!!", "Очередь застряла", "キューが詰まった"]):
        body = {"title": title, "fingerprint": f"odd-{n}", "startsAt": "2026-11-23T07:00:00Z"}
        assert (await post(bot, body, path="/alerts/generic"))[0] == 200
    created = await slack.wait_for("conversations.create", 7)
    odd = [c.body["name"] for c in created[3:]]
    assert len(set(odd)) == 4
    assert all(re.fullmatch(r"inc-20261123-0700-alert-[0-9a-f]{6}", name) for name in odd)


async def test_a_channel_created_before_a_crash_is_adopted_only_if_it_is_ours(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    from bot.alerts.models import AlertmanagerPayload, from_alertmanager

    event = from_alertmanager(AlertmanagerPayload.model_validate(fixture("firing.json")))
    state = f"{prefix}-state"
    # The crashed attempt reserved the name and asked Slack for it; Slack made it.
    await redis.set(f"{state}:channelname:{CHANNEL_NAME}", f"{event.group_id}-1")
    await redis.hset(f"{state}:incident:{event.group_id}-1", f"asked:{CHANNEL_NAME}", "1")
    slack.queued["conversations.create"] = [name_taken()]
    slack.responses["conversations.list"] = {
        "ok": True,
        "channels": [{"id": "COURS", "name": CHANNEL_NAME, "creator": "UBOT"}],
    }
    bot = await make_bot(alert_webhook_token=TOKEN)
    assert (await post(bot, fixture("firing.json")))[0] == 200
    [pin] = await slack.wait_for("pins.add")
    assert pin.body["channel"] == "COURS"
    assert len(slack.of("conversations.create")) == 1
