"""The postmortem on resolve: summary, severity, lead, duration, impact (peak depth, oldest
age, jobs quarantined and replayed in the channel), timeline and follow-ups
(`incident followup`), posted in the channel and attached as a Markdown file. Through the
real app (Bolt over HTTP with signed requests), the Slack Web API stand-in, real Redis and
npm bullmq for the failed job; the builders alone with hostile text."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from alert_helpers import wait_until
from conftest import NodeCall
from slack_helpers import MakeBot, press, slash
from slack_stub import Call, SlackStub
from test_incident_lifecycle import declare, said, text_of

from bot.audit import AuditLog
from bot.http_app import DISPATCHER
from bot.incidents.postmortem import (
    SECTION_MAX,
    Followup,
    Impact,
    build,
    markdown,
    md,
)
from bot.queues.service import QueueService
from commands.incident import NOT_HERE


def section_texts(body: dict[str, Any]) -> list[str]:
    blocks = body["blocks"]
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


def uploads_of(slack: SlackStub, filename: str) -> list[Call]:
    return [c for c in slack.of("files.getUploadURLExternal") if c.body["filename"] == filename]


async def test_the_postmortem_has_impact_timeline_and_follow_ups_posted_and_attached_once(
    make_bot: MakeBot,
    slack: SlackStub,
    service: QueueService,
    node: NodeCall,
    redis: aioredis.Redis,
    prefix: str,
) -> None:
    [failed] = (await node("fail", queue="batch-jobs", count=1, reason="pdf renderer crashed"))[
        "ids"
    ]
    await service.store.bullmq(service.ref("batch-jobs")).addBulk(
        [{"name": "email", "data": {"i": i}} for i in range(3)]
    )
    bot = await make_bot()
    channel, name = await declare(
        bot,
        slack,
        'incident declare "Checkout emails stuck" --queue batch-jobs --severity sev1',
        "d1",
    )
    state = f"{prefix}-state"
    iid = str(await redis.get(f"{state}:channel:{channel}"))
    key = f"{state}:incident:{iid}"
    assert int(await redis.hget(key, "impact_peak_depth") or 0) == 3  # the status's snapshot

    async def run(line: str, reply_to: str) -> str:
        await slash(bot, slack, line, user="UOPS", reply_to=reply_to, channel=channel)
        return text_of((await said(slack, f"respond:{reply_to}", "")).body)

    await run("incident lead <@UANN>", "l1")
    await run('incident update "consumers scaled to 8"', "u1")
    assert "moved from" in await run(
        f'quarantine batch-jobs {failed} --reason "crashes the renderer"', "q1"
    )
    await run("dlq replay batch-jobs --count 1", "r1")  # a preview: asks first, counts nothing
    preview = await said(slack, "respond:r1", "replay would put")
    [actions] = [b for b in preview.body["blocks"] if b["type"] == "actions"]
    await press(
        bot,
        slack,
        "queueops_confirm",
        actions["elements"][0]["value"],
        user="UOPS",
        reply_to="r2",
        channel=channel,
    )
    assert "1 job replayed" in text_of((await said(slack, "respond:r2", "")).body)
    assert "follow-up 1 added; the postmortem will list it" in await run(
        'incident followup "alert on oldest waiting age"', "f1"
    )
    await said(slack, "chat.postMessage", "Follow-up 1 from <@UOPS>", channel=channel)
    assert "follow-up 2 added" in await run(
        'incident followup "cap retries of the <pdf> renderer"', "f2"
    )
    counts = await redis.hmget(key, "impact_quarantined", "impact_replayed")
    assert counts == ["1", "1"]
    audited = [(e.command, e.jobs) for e in await AuditLog(redis, f"{state}:audit").recent(50)]
    assert ("quarantine", {"quarantined": 1}) in audited
    # The replay's preview (it asked first) moved nothing; the confirmed run moved one.
    assert [j for c, j in audited if c == "dlq replay"] == [{"replayed": 1}, None]
    assert ("incident lead", None) in audited

    # The first resolve stops at the file (Slack refused the upload): the retry posts the
    # message no second time and attaches the file once.
    filename = f"postmortem-{name}.md"
    slack.queued["files.getUploadURLExternal"] = [{"ok": False, "error": "internal_error"}]
    value = f"{iid}|batch-jobs"
    await press(bot, slack, "incident_resolve", value, user="UOPS", reply_to="x1", channel=channel)
    await slack.wait_for("files.getUploadURLExternal")

    async def refused_and_unlocked() -> bool:
        refused = len(uploads_of(slack, filename)) == 1
        return refused and not await redis.exists(f"{state}:lock:{iid}")

    await wait_until(refused_and_unlocked)
    await press(bot, slack, "incident_resolve", value, user="UOPS", reply_to="x2", channel=channel)
    await said(slack, "chat.update", ":white_check_mark: Resolved", channel=channel)
    [completed] = [
        c
        for c in await slack.wait_for("files.completeUploadExternal")
        if "Postmortem" in json.dumps(c.body)
    ]
    assert "Postmortem: Checkout emails stuck" in json.dumps(completed.body)
    desk: Any = bot.server.app[DISPATCHER].incidents
    await desk.incidents.resolve(iid, by="slack:UOPS")  # resolved already: nothing again
    posted = [
        c
        for c in slack.of("chat.postMessage")
        if c.body["channel"] == channel and c.body.get("text", "").startswith("Postmortem:")
    ]
    assert len(posted) == 1 and len(uploads_of(slack, filename)) == 2  # the refused one too
    assert len([c for c in slack.of("upload") if "# Postmortem:" in c.body["content"]]) == 1

    message = "\n".join(section_texts(posted[0].body))
    assert "*Checkout emails stuck* on batch-jobs" in message
    assert "Source: declared by slack:UOPS" in message
    assert "*Severity:* sev1 · *Lead:* <@UANN>" in message
    assert "*Duration:* " in message and "opened " in message and "resolved " in message
    peak = re.search(r"Peak depth: (\d+) jobs", message)
    assert peak and int(peak.group(1)) >= 3
    assert "Oldest waiting job: " in message
    assert "Jobs quarantined: 1 · replayed: 1" in message
    assert "update by slack:UOPS: consumers scaled to 8" in message
    assert f"ran `quarantine batch-jobs {failed}" in message
    assert "resolved by slack:UOPS" in message
    assert "1. alert on oldest waiting age" in message
    assert "2. cap retries of the &lt;pdf&gt; renderer" in message
    assert "*Reprocessing plan* (DLQ replay as a canary, 10-50 jobs first)" in message

    [document] = [c.body["content"] for c in slack.of("upload") if c.body["content"]]
    for heading in (
        "## Summary",
        "## Severity",
        "## Lead",
        "## Duration",
        "## Impact",
        "## Timeline",
        "## Follow-ups",
        "## Root cause",
        "## Mitigation",
        "## Reprocessing plan",
        "## Lessons learned",
    ):
        assert f"\n{heading}\n" in document, heading
    assert "\nsev1\n" in document and "Slack user UANN" in document
    assert "- Jobs quarantined: 1 · replayed: 1" in document
    assert re.search(r"- Peak depth: \d+ jobs", document)
    assert re.search(
        r"\n- \d{4}-\d\d-\d\d \d\d:\d\d:\d\d — update by slack:UOPS: consumers", document
    )
    assert "\n1. alert on oldest waiting age (slack:UOPS, " in document
    assert "\n2. cap retries of the \\<pdf\\> renderer" in document

    # A follow-up after the resolve edits the posted message in place; no new file.
    ts = str(await redis.hget(key, "postmortem_ts"))
    assert "the postmortem message lists it" in await run(
        'incident followup "load-test the renderer"', "f3"
    )
    edited = await said(slack, "chat.update", "3. load-test the renderer", channel=channel)
    assert edited.body["ts"] == ts
    assert len(uploads_of(slack, filename)) == 2
    timeline = [json.loads(e)["text"] for e in await redis.lrange(f"{state}:timeline:{iid}", 0, -1)]
    assert "follow-up by slack:UOPS: load-test the renderer" in timeline


async def test_a_follow_up_outside_an_incident_channel_or_too_long_is_one_line(
    make_bot: MakeBot, slack: SlackStub
) -> None:
    bot = await make_bot()
    channel, _ = await declare(bot, slack, 'incident declare "Exports failing"', "d1")
    await slash(bot, slack, 'incident followup "x"', user="UOPS", reply_to="n1", channel="C0RANDOM")
    assert NOT_HERE in text_of((await said(slack, "respond:n1", "")).body)
    await slash(
        bot, slack, "incident followup " + "y" * 501, user="UOPS", reply_to="n2", channel=channel
    )
    refused = text_of((await said(slack, "respond:n2", "")).body)
    assert "TEXT is too long (at most 500 characters)" in refused
    assert not [c for c in slack.of("chat.postMessage") if "Follow-up" in c.body.get("text", "")]


async def test_the_peak_depth_folds_in_the_ticks_samples_within_the_incident(
    make_bot: MakeBot,
    slack: SlackStub,
    service: QueueService,
    redis: aioredis.Redis,
    prefix: str,
) -> None:
    await service.store.bullmq(service.ref("q")).add("pdf", {})
    bot = await make_bot()
    channel, _ = await declare(bot, slack, 'incident declare "Deep" --queue q', "d1")
    state = f"{prefix}-state"
    iid = str(await redis.get(f"{state}:channel:{channel}"))
    key = f"{state}:incident:{iid}"
    assert await redis.hget(key, "impact_peak_depth") == "1"
    opened = int(await redis.hget(key, "opened_at") or 0)
    # What the tick's probe writes (newest first): one sample before the incident, deeper
    # than anything during it, and one during it, deeper than any snapshot saw.
    samples = f"{state}:depth:{prefix}:q"
    await redis.lpush(samples, f"{opened - 60_000}:5000", f"{opened + 1}:700")
    await press(
        bot, slack, "incident_resolve", f"{iid}|q", user="UOPS", reply_to="x1", channel=channel
    )
    await slack.wait_for("files.completeUploadExternal")
    assert await redis.hget(key, "impact_peak_depth") == "700"
    [document] = [c.body["content"] for c in slack.of("upload") if c.body["content"]]
    assert "- Peak depth: 700 jobs (waiting + paused + prioritized)" in document


HOSTILE = "```\n# not a heading\n<!channel> [click](http://evil) | a | b |\n<script>`x`</script>"


def hostile_incident() -> dict[str, Any]:
    opened = int(datetime(2026, 12, 3, 9, 0, tzinfo=UTC).timestamp() * 1000)
    return {
        "id": "abc-1",
        "title": "Title " + HOSTILE,
        "summary": "z" * 10_000,
        "queues": ["q<!here>"],
        "labels": {"alertname": "Deep `queue`"},
        "source": "alertmanager",
        "link": "https://am:secret@am.example/graph?g0.expr=a_b&tab=1",
        "starts_at": datetime(2026, 12, 3, 8, 59, tzinfo=UTC),
        "opened_at": opened,
        "resolved_at": opened + 5_430_000,
        "severity": "sev2",
        "lead": "UANN",
        "channel_name": "inc-20261203-0900-deep",
        "impact_peak_depth": "12345",
        "impact_oldest_ms": "600000",
        "impact_quarantined": "3",
    }


def test_the_markdown_neutralises_hostile_text_and_keeps_every_entry() -> None:
    incident = hostile_incident()
    at = int(incident["opened_at"])
    timeline = [{"at_ms": at + i * 1000, "text": f"entry {i} {HOSTILE}"} for i in range(500)]
    timeline.append({"at_ms": at + 600_000, "text": "w" * 10_000})
    followups = [Followup(at_ms=at, by="slack:UOPS", text=HOSTILE + "!" * 10_000)]
    doc = markdown(incident, timeline, followups, Impact.of(incident))

    assert "<!channel>" not in doc and "<!here>" not in doc and "<script>" not in doc
    assert "```" not in doc and "[click](" not in doc and "\\[click\\](http" in doc
    assert "\\<!channel\\>" in doc and "\\`x\\`" in doc
    headings = [line for line in doc.splitlines() if line.startswith("#")]
    assert [h.split(" ", 1)[0] for h in headings] == ["#"] + ["##"] * 11  # ours only
    entries = [line for line in doc.splitlines() if line.startswith("- 2026-12-03 ")]
    assert len(entries) == 501  # every entry, each on one line
    assert entries[0].startswith("- 2026-12-03 09:00:00 — entry 0 ")
    assert max(len(line) for line in doc.splitlines()) < 2 * 4000 + 100  # bounded, escaped
    assert "1h30m30s: opened 2026-12-03 09:00:00 UTC, resolved 2026-12-03 10:30:30 UTC" in doc
    assert "- Peak depth: 12,345 jobs" in doc and "- Oldest waiting job: 10 min" in doc
    assert "alert Deep \\`queue\\` from alertmanager" in doc
    assert "- Source link: <https://am.example/graph?g0.expr=a_b&tab=1>" in doc  # no password
    assert "secret" not in doc


def test_the_slack_message_fits_slack_and_says_what_only_the_file_has() -> None:
    incident = hostile_incident()
    at = int(incident["opened_at"])
    timeline = [{"at_ms": at + i * 1000, "text": f"entry {i} {HOSTILE}"} for i in range(500)]
    followups = [Followup(at_ms=at, by="cli:bo", text=f"do {i} " + "y" * 400) for i in range(100)]
    found = build(incident, timeline, followups)
    blocks = [b.to_dict() for b in found.blocks]
    assert len(blocks) <= 50
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert all(len(t) <= SECTION_MAX for t in texts)
    everything = json.dumps(blocks[1:], ensure_ascii=False)  # the mrkdwn: after the header
    assert "<!channel>" not in everything + found.text and "<!here>" not in everything
    assert blocks[0]["text"]["type"] == "plain_text"  # no mention is parsed in a header
    earlier = re.search(r"… ([\d,]+) earlier entries in the file", everything)
    assert earlier and 0 < int(earlier.group(1).replace(",", "")) < 500
    assert "entry 499 " in everything  # the newest are shown
    assert re.search(r"… \d+ more follow-ups in the file", everything)
    assert found.filename == "postmortem-inc-20261203-0900-deep.md"
    assert blocks[0]["type"] == "header" and len(blocks[0]["text"]["text"]) <= 150


def test_md_escapes_markdown_and_flattens_lines() -> None:
    assert md("a\n# b") == "a \\# b"
    assert md("`x` <!channel> *y* [z](u)") == "\\`x\\` \\<!channel\\> \\*y\\* \\[z\\](u)"
    assert len(md("x" * 10_000, 100)) == 100


async def test_a_web_api_that_answers_files_and_permalinks_oddly_never_keeps_it_open(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    """A Web API (a stand-in, a proxy) that answers `{"ok": true}` and nothing more to
    the upload's first step and to chat.getPermalink: the incident still resolves, the
    message has the postmortem, and the missing file is one line."""
    bot = await make_bot()
    channel, _ = await declare(bot, slack, 'incident declare "Odd answers"', "d1")
    iid = str(await redis.get(f"{prefix}-state:channel:{channel}"))
    slack.responses["files.getUploadURLExternal"] = {"ok": True}
    slack.responses["chat.getPermalink"] = {"ok": True}
    await press(
        bot, slack, "incident_resolve", f"{iid}|", user="UOPS", reply_to="p1", channel=channel
    )
    await said(slack, "chat.postMessage", "refused the postmortem's Markdown file", channel=channel)

    async def resolved() -> bool:
        return await redis.hget(f"{prefix}-state:incident:{iid}", "status") == "resolved"

    await wait_until(resolved, within=8.0)
    state = await redis.hgetall(f"{prefix}-state:incident:{iid}")
    assert state["postmortem_ts"] and state["postmortem_file"].startswith("refused:")
    assert state["bookmark:postmortem"] == "refused: no permalink"
    assert not [c for c in slack.of("bookmarks.add") if c.body.get("title") == "Postmortem"]


async def test_a_resolve_slack_cannot_finish_is_said_to_the_presser(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    bot = await make_bot()
    channel, _ = await declare(bot, slack, 'incident declare "Slack flaky"', "d1")
    iid = str(await redis.get(f"{prefix}-state:channel:{channel}"))
    slack.queued["files.getUploadURLExternal"] = [{"ok": False, "error": "service_unavailable"}]
    await press(
        bot, slack, "incident_resolve", f"{iid}|", user="UOPS", reply_to="p1", channel=channel
    )
    told = await said(slack, "chat.postEphemeral", "resolving did not finish", channel=channel)
    assert told.body["user"] == "UOPS" and "press Resolve again" in told.body["text"]
    assert await redis.hget(f"{prefix}-state:incident:{iid}", "status") != "resolved"
    await press(
        bot, slack, "incident_resolve", f"{iid}|", user="UOPS", reply_to="p2", channel=channel
    )

    async def resolved() -> bool:
        return await redis.hget(f"{prefix}-state:incident:{iid}", "status") == "resolved"

    await wait_until(resolved, within=8.0)


async def test_a_resolve_press_waits_for_a_lock_held_a_moment(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    """Pressed while a notification is being handled (its lock held): the press waits for
    the lock and resolves, rather than being dropped."""
    bot = await make_bot()
    channel, _ = await declare(bot, slack, 'incident declare "Locked a moment"', "d1")
    iid = str(await redis.get(f"{prefix}-state:channel:{channel}"))
    await redis.set(f"{prefix}-state:lock:{iid}", "someone-else", px=400)
    await press(
        bot, slack, "incident_resolve", f"{iid}|", user="UOPS", reply_to="p1", channel=channel
    )

    async def resolved() -> bool:
        return await redis.hget(f"{prefix}-state:incident:{iid}", "status") == "resolved"

    await wait_until(resolved, within=8.0)
    assert not [c for c in slack.of("chat.postEphemeral") if "did not finish" in str(c.body)]
