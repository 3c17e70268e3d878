"""The real Bolt app over real HTTP: signed requests in, Web API calls out to a stand-in
(SLACK_API_URL) that records them. Roles, confirmations, audit, rate limit, health."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
import redis.asyncio as aioredis
from conftest import NodeCall
from slack_helpers import BOT_TOKEN, MakeBot, press, sign, slash, text_of
from slack_stub import SlackStub

from bot.http_app import DISPATCHER
from bot.queues.service import QueueService


async def test_slash_snapshot_acks_at_once_and_replies_in_channel(
    make_bot: MakeBot, slack: SlackStub, service: QueueService
) -> None:
    await service.store.bullmq(service.ref("batch-jobs")).add("render", {"doc": 1})
    bot = await make_bot()
    started = time.perf_counter()
    resp = await slash(bot, slack, "snapshot")
    assert resp.status == 200 and time.perf_counter() - started < 1.0
    [reply] = await slack.wait_for("respond:r1")
    assert reply.body["response_type"] == "in_channel"
    assert "batch-jobs" in text_of(reply.body) and ":large_green_circle:" in text_of(reply.body)
    # Answered before Bolt (bot/slack/slash.py): the signature proves the request and the
    # reply goes to its response_url, so no auth.test; Web API calls carry the bot token.
    assert not slack.of("auth.test")
    [roles] = slack.of("usergroups.users.list")
    assert roles.headers["Authorization"] == f"Bearer {BOT_TOKEN}"


async def test_bad_signature_and_stale_timestamp_are_401(
    make_bot: MakeBot, slack: SlackStub
) -> None:
    bot = await make_bot()
    body = urlencode({"command": "/queue", "text": "snapshot", "user_id": "U1"})
    forged = await bot.post("/slack/events", data=body, headers=sign(body, secret="wrong"))
    stale = await bot.post(
        "/slack/events", data=body, headers=sign(body, at=int(time.time()) - 6 * 60)
    )
    assert (forged.status, stale.status) == (401, 401)
    assert not slack.of("respond:r1")


async def test_a_viewer_is_refused_and_the_job_does_not_move(
    make_bot: MakeBot, slack: SlackStub, service: QueueService
) -> None:
    job = await service.store.bullmq(service.ref("q")).add("pdf", {"doc": 1})
    bot = await make_bot()
    await slash(bot, slack, f'quarantine q {job.id} --reason "bad pdf"', user="UVIEW")
    [reply] = await slack.wait_for("respond:r1")
    assert reply.body["response_type"] == "ephemeral"
    assert "needs the operator role; slack:UVIEW has viewer" in text_of(reply.body)
    assert (await service.snapshot(["q"]))[0].counts["waiting"] == 1


async def test_an_operator_by_user_group_quarantines(
    make_bot: MakeBot, slack: SlackStub, service: QueueService
) -> None:
    slack.group_members["S0OPS"] = ["UGROUPIE"]
    job = await service.store.bullmq(service.ref("q")).add("pdf", {"doc": 1})
    bot = await make_bot()
    await slash(bot, slack, f"quarantine q {job.id} --reason “bad pdf”", user="UGROUPIE")
    [reply] = await slack.wait_for("respond:r1")
    assert "moved from" in text_of(reply.body), text_of(reply.body)
    entry = await service.dlq_show("q", str(job.id))
    assert entry.quarantined_by == "slack:UGROUPIE" and entry.quarantine_reason == "bad pdf"
    assert [c.body["usergroup"] for c in slack.of("usergroups.users.list")] == ["S0OPS"]


async def test_bulk_quarantine_asks_and_only_the_requester_or_an_admin_confirms_once(
    make_bot: MakeBot,
    slack: SlackStub,
    service: QueueService,
    node: NodeCall,
    redis: aioredis.Redis,
    prefix: str,
) -> None:
    await node("fail", queue="jobs", count=3, reason="ECONNRESET")
    bot = await make_bot()
    await slash(bot, slack, 'quarantine jobs --failed-matching "ECONN"', user="UOPS")
    [preview] = await slack.wait_for("respond:r1")
    assert "would move 3 failed jobs" in text_of(preview.body)
    [actions] = [b for b in preview.body["blocks"] if b["type"] == "actions"]
    token = actions["elements"][0]["value"]
    assert 0 < await redis.ttl(f"{prefix}-state:confirm:{token}") <= 300
    assert (await service.snapshot(["jobs"]))[0].counts["failed"] == 3  # nothing moved yet

    await press(bot, slack, "queueops_confirm", token, user="USTRANGER", reply_to="r2")
    [refusal] = await slack.wait_for("respond:r2")
    assert "only <@UOPS> or an admin may confirm" in text_of(refusal.body)

    await press(bot, slack, "queueops_confirm", token, user="UOPS", reply_to="r3")
    [done] = await slack.wait_for("respond:r3")
    assert done.body["replace_original"] is True and "3 failed jobs" in text_of(done.body)
    assert (await service.dlq_list("jobs")).depth == 3

    await press(bot, slack, "queueops_confirm", token, user="UOPS", reply_to="r4")
    [again] = await slack.wait_for("respond:r4")
    assert "expired or was already used" in text_of(again.body)


async def test_audit_trail_in_redis_and_channel_without_secrets(
    make_bot: MakeBot,
    slack: SlackStub,
    service: QueueService,
    redis: aioredis.Redis,
    prefix: str,
) -> None:
    await service.store.bullmq(service.ref("q")).add("pdf", {})
    bot = await make_bot(audit_channel="CAUDIT01")
    await slash(bot, slack, f"snapshot q --token {BOT_TOKEN}", user="UOPS")
    [reply] = await slack.wait_for("respond:r1")
    assert "unknown option --token" in text_of(reply.body)
    [posted] = await slack.wait_for("chat.postMessage")
    rows = await redis.xrange(f"{prefix}-state:audit")
    assert len(rows) == 1
    entry = rows[0][1]
    assert entry["actor"] == "slack:UOPS" and entry["channel"] == "C0INCIDENT"
    assert entry["command"] == "snapshot" and entry["outcome"] == "error"  # unknown --token
    assert posted.body["channel"] == "CAUDIT01"
    everything = json.dumps([c.body for c in slack.calls]) + json.dumps(rows)
    assert BOT_TOKEN not in everything and "[redacted]" in entry["words"]


async def test_reads_reach_no_audit_changes_do_and_serve_is_named_in_client_list(
    make_bot: MakeBot,
    slack: SlackStub,
    service: QueueService,
    redis: aioredis.Redis,
    prefix: str,
) -> None:
    await service.store.bullmq(service.ref("q")).add("pdf", {})
    bot = await make_bot(audit_channel="CAUDIT01")
    await slash(bot, slack, "snapshot q", user="UOPS", reply_to="s")
    await slack.wait_for("respond:s")
    await slash(bot, slack, "pause q", user="UOPS", reply_to="p")
    await slack.wait_for("respond:p")
    [posted] = await slack.wait_for("chat.postMessage")  # the pause only
    assert "pause q" in posted.body["text"]
    rows = await redis.xrange(f"{prefix}-state:audit")
    assert [r[1]["command"] for r in rows] == ["pause"]
    # The bot's long-lived connection keeps its name (CLIENT SETNAME), RESP2 (no HELLO).
    serving = [c for c in await redis.client_list() if c["name"] == "queueops-serve"]
    assert serving and {c["resp"] for c in serving} == {"2"}


async def test_reads_are_audited_with_queueops_audit_reads(
    make_bot: MakeBot,
    slack: SlackStub,
    service: QueueService,
    redis: aioredis.Redis,
    prefix: str,
) -> None:
    await service.store.bullmq(service.ref("q")).add("pdf", {})
    bot = await make_bot(audit_reads=True)
    await slash(bot, slack, "snapshot q", user="UVIEW")
    await slack.wait_for("respond:r1")
    [(_, entry)] = await redis.xrange(f"{prefix}-state:audit")
    assert entry["command"] == "snapshot" and entry["outcome"] == "ok"


async def test_operator_commands_are_rate_limited_per_person(
    make_bot: MakeBot, slack: SlackStub, service: QueueService
) -> None:
    await service.store.bullmq(service.ref("q")).add("pdf", {})
    bot = await make_bot(operator_rate_per_minute=2)
    for n in range(3):
        await slash(bot, slack, "pause q", user="UOPS", reply_to=f"p{n}")
    replies = [(await slack.wait_for(f"respond:p{n}"))[0] for n in range(3)]
    assert "slow down: at most 2 operator commands a minute" in text_of(replies[2].body)
    await slash(bot, slack, "snapshot q", user="UOPS", reply_to="s")  # viewers are not limited
    assert "slow down" not in text_of((await slack.wait_for("respond:s"))[0].body)


async def test_health_readiness_and_metrics(
    make_bot: MakeBot, slack: SlackStub, service: QueueService
) -> None:
    bot = await make_bot()
    assert (await (await bot.get("/healthz")).json()) == {"ok": True}
    ready = await bot.get("/readyz")
    assert ready.status == 200 and await ready.json() == {"ok": True, "redis": "ok", "slack": "ok"}
    await slash(bot, slack, "help")
    await slack.wait_for("respond:r1")
    metrics = await (await bot.get("/metrics")).text()
    assert 'queueops_commands_total{command="help",outcome="ok",transport="slack"}' in metrics

    down = await make_bot(redis_url="redis://127.0.0.1:1/0", slack_api_url="http://127.0.0.1:1/")
    not_ready = await down.get("/readyz")
    body = await not_ready.json()
    assert not_ready.status == 503 and body["redis"].startswith("unreachable")
    assert body["slack"].startswith("unreachable")


async def test_serve_without_slack_credentials_still_serves_health(
    make_bot: MakeBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    bot = await make_bot(slack_bot_token=None, slack_signing_secret=None)
    assert (await bot.get("/healthz")).status == 200
    assert (await bot.post("/slack/events", data="x")).status == 404
    assert any("Slack is off" in r.message for r in caplog.records)
    assert (await (await bot.get("/readyz")).json())["slack"] == "off"


# Web API methods the code may call, and the bot scopes each needs (api.slack.com/methods).
SCOPES_BY_METHOD: dict[str, set[str]] = {
    "auth.test": set(),
    "chat.postMessage": {"chat:write"},
    "chat.update": {"chat:write"},
    "chat.postEphemeral": {"chat:write"},
    "chat.getPermalink": set(),
    "conversations.list": {"channels:read"},
    "conversations.info": {"channels:read"},
    "conversations.join": {"channels:join"},
    "views.open": set(),
    "views.publish": set(),
    "files.upload.v2": {"files:write"},
    "usergroups.users.list": {"usergroups:read"},
    "conversations.create": {"channels:manage"},
    "conversations.invite": {"channels:manage"},
    "conversations.setTopic": {"channels:manage"},
    "conversations.archive": {"channels:manage"},
    "pins.add": {"pins:write"},
    "bookmarks.add": {"bookmarks:write"},
    "files.getUploadURLExternal": {"files:write"},
    "files.completeUploadExternal": {"files:write"},
}


def web_api_methods_called() -> set[str]:
    """Every AsyncWebClient method the code calls, as Slack method names."""
    import re
    from pathlib import Path

    from slack_sdk.web.async_client import AsyncWebClient

    known = {name for name in dir(AsyncWebClient) if not name.startswith("_")}
    root = Path(__file__).resolve().parent.parent
    called = set()
    for source in [
        *root.glob("bot/**/*.py"),
        *root.glob("commands/**/*.py"),
        *root.glob("scheduler/**/*.py"),
    ]:
        for name in re.findall(r"\.([a-z]+_[A-Za-z0-9_]+)\(", source.read_text()):
            if name in known:
                called.add(name.replace("_", "."))
    return called


def load_manifest() -> dict[str, Any]:
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parent.parent / "manifest.yml").read_text()
    manifest: dict[str, Any] = yaml.safe_load(text)
    return manifest


def test_manifest_scopes_are_exactly_what_the_code_calls() -> None:
    manifest = load_manifest()
    methods = web_api_methods_called()
    assert "chat.postMessage" in methods and "usergroups.users.list" in methods
    unknown = methods - set(SCOPES_BY_METHOD)
    assert not unknown, f"add the scopes of {unknown} to SCOPES_BY_METHOD and manifest.yml"
    needed = set().union(*(SCOPES_BY_METHOD[m] for m in methods)) | {"commands"}
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == needed


async def test_every_manifest_command_has_a_handler(make_bot: MakeBot, slack: SlackStub) -> None:
    manifest = load_manifest()
    bot = await make_bot()
    commands = [c["command"] for c in manifest["features"]["slash_commands"]]
    assert commands == ["/queue"]
    for n, command in enumerate(commands):
        body = urlencode(
            {
                "command": command,
                "text": "help",
                "user_id": "U1",
                "team_id": "T1",
                "channel_id": "C1",
                "response_url": slack.response_url(f"m{n}"),
            }
        )
        assert (await bot.post("/slack/events", data=body, headers=sign(body))).status == 200
        [reply] = await slack.wait_for(f"respond:m{n}")
        assert "snapshot [QUEUE ...]" in text_of(reply.body)
    assert manifest["settings"]["interactivity"]["is_enabled"] is True


async def test_socket_mode_asks_slack_for_a_connection_and_keeps_serving(
    make_bot: MakeBot, slack: SlackStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    slack.responses["apps.connections.open"] = {"ok": False, "error": "invalid_auth"}
    bot = await make_bot(slack_app_token="xapp-1-A1-1-abc", slack_signing_secret=None)
    [opened] = await slack.wait_for("apps.connections.open")
    assert opened.headers["Authorization"] == "Bearer xapp-1-A1-1-abc"
    assert (await bot.post("/slack/events", data="x")).status == 404  # no HTTP mode
    assert (await bot.get("/healthz")).status == 200
    assert any("Slack: Socket Mode" in r.message for r in caplog.records)


async def test_cancel_and_replay_preview(
    make_bot: MakeBot, slack: SlackStub, service: QueueService
) -> None:
    job = await service.store.bullmq(service.ref("q")).add("pdf", {"doc": 7})
    await service.quarantine("q", str(job.id), reason="r", actor="t")
    bot = await make_bot()
    await slash(bot, slack, "dlq replay q --count 5", user="UOPS")
    [preview] = await slack.wait_for("respond:r1")
    assert "replay would put this job back into" in text_of(preview.body)
    [actions] = [b for b in preview.body["blocks"] if b["type"] == "actions"]
    await press(
        bot, slack, "queueops_cancel", actions["elements"][1]["value"], user="UADMIN", reply_to="r2"
    )
    [cancelled] = await slack.wait_for("respond:r2")
    assert "cancelled" in text_of(cancelled.body)
    assert (await service.dlq_list("q")).depth == 1


async def test_mode_switch_in_slack_previews_and_an_admin_confirms(
    make_bot: MakeBot, slack: SlackStub, prefix: str, redis: aioredis.Redis
) -> None:
    bot = await make_bot(worker_mode_backend="none")
    await slash(bot, slack, "mode always-on", user="UOPS", reply_to="op")
    [refused] = await slack.wait_for("respond:op")
    assert "'mode' needs the admin role" in text_of(refused.body)
    await slash(bot, slack, "mode always-on", user="UADMIN")
    [preview] = await slack.wait_for("respond:r1")
    assert "switch worker mode cron → always-on" in text_of(preview.body)
    [actions] = [b for b in preview.body["blocks"] if b["type"] == "actions"]
    await press(
        bot,
        slack,
        "queueops_confirm",
        actions["elements"][0]["value"],
        user="UADMIN",
        reply_to="r2",
    )
    [done] = await slack.wait_for("respond:r2")
    assert "worker mode is now always-on" in text_of(done.body)
    assert await redis.hget(f"{prefix}-state:cron", "mode") == "always-on"


async def test_a_command_that_hits_a_bug_still_answers_in_one_line(
    make_bot: MakeBot, slack: SlackStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = await make_bot()

    async def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(bot.app[DISPATCHER], "run", broken)
    assert (await slash(bot, slack, "snapshot")).status == 200
    [reply] = await slack.wait_for("respond:r1")
    assert reply.body["response_type"] == "ephemeral"
    assert "internal error (KeyError)" in text_of(reply.body)
