"""The App Home tab and the daily digest. Through the real app (Bolt over HTTP: Slack's
events are signed JSON `event_callback` bodies to /slack/events), the Slack Web API
stand-in, real Redis and the real tick (`bot.app[TICKER]`, driven by hand: the configured
cadence is an hour, so only these ticks run)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from alert_helpers import wait_until
from redis_for_tests import REDIS_URL
from slack_helpers import MakeBot, press, sign
from slack_stub import Call, SlackStub
from test_incident_lifecycle import declare, said
from test_reminders import tick_cost

from bot.config import ConfigError, load_settings
from bot.http_app import DIGEST, HOME, TICKER
from bot.incidents.digest import digest_blocks, parse_digest_at
from bot.queues.models import QueueSnapshot
from bot.queues.service import QueueService
from bot.roles import Role
from bot.slack.home import Overview, home_blocks, home_view

HOUR_MS = 3_600_000
STAKEHOLDERS = "C0STAKE"


async def event(bot: TestClient[Any, Any], payload: dict[str, Any]) -> ClientResponse:
    """An Events API delivery as Slack sends it: a signed JSON body."""
    body = json.dumps(
        {
            "token": "legacy",
            "team_id": "T0001",
            "api_app_id": "A1",
            "type": "event_callback",
            "event_id": f"Ev{time.monotonic_ns()}",
            "event_time": int(time.time()),
            "event": payload,
        }
    )
    headers = {**sign(body), "Content-Type": "application/json"}
    return await bot.post("/slack/events", data=body, headers=headers)


def home_opened(user: str, tab: str = "home") -> dict[str, Any]:
    return {
        "type": "app_home_opened",
        "user": user,
        "channel": "D0HOME",
        "tab": tab,
        "event_ts": f"{time.time():.6f}",
    }


def shown(call: Call) -> str:
    """What a published Home shows, with its non-ASCII as typed (·)."""
    view = call.body["view"]
    if isinstance(view, str):
        view = json.loads(view)
    assert view["type"] == "home"
    return json.dumps(view["blocks"], ensure_ascii=False)


def published_to(slack: SlackStub, user: str) -> list[Call]:
    return [c for c in slack.of("views.publish") if c.body.get("user_id") == user]


def digests(slack: SlackStub) -> list[Call]:
    return [
        c
        for c in slack.of("chat.postMessage")
        if c.body.get("channel") == STAKEHOLDERS and "Daily digest" in str(c.body.get("text"))
    ]


def snap(name: str, **counts: int) -> QueueSnapshot:
    base = dict.fromkeys(
        (
            "waiting",
            "active",
            "delayed",
            "prioritized",
            "waiting-children",
            "failed",
            "completed",
            "paused",
        ),
        0,
    )
    return QueueSnapshot(
        name=name,
        counts={**base, **counts},
        is_paused=False,
        oldest_waiting_age_ms=90_000 if counts.get("waiting") else None,
        top_waiting_names=[],
        top_failure_reasons=[],
        dlq_depth=3,
        waiting_sample=0,
        failed_sample=0,
    )


async def test_the_home_shows_incidents_queues_the_cron_and_the_role(
    make_bot: MakeBot, slack: SlackStub, service: QueueService
) -> None:
    await service.store.bullmq(service.ref("batch-jobs")).addBulk(
        [{"name": "email", "data": {"i": i}} for i in range(2)]
    )
    bot = await make_bot(drain_every_ms=HOUR_MS)
    channel, _ = await declare(
        bot,
        slack,
        'incident declare "Checkout emails stuck" --queue batch-jobs --severity sev1',
        "d1",
    )
    await declare(bot, slack, 'incident declare "Older one" --severity sev3', "d2")

    assert (await event(bot, home_opened("UOPS"))).status == 200
    [home] = await slack.wait_for("views.publish")
    assert home.body["user_id"] == "UOPS"
    text = shown(home)
    assert "Your role: *operator*" in text
    assert "Open incidents (2)" in text
    assert "*Checkout emails stuck* on batch-jobs" in text and f"<#{channel}>" in text
    assert "*sev1* · lead: nobody yet" in text
    assert text.index("Older one") < text.index("Checkout emails stuck")  # newest first
    assert "*batch-jobs* healthy · waiting 2 · active 0 · delayed 0 · failed 0" in text
    assert "DLQ 0" in text
    assert "Drain cron *off*" in text and "last tick" in text  # `cron status`'s words

    # A viewer sees their own role; opening again within the debounce publishes nothing.
    await event(bot, home_opened("UVIEW"))
    await slack.wait_for("views.publish", 2)
    [viewer] = published_to(slack, "UVIEW")
    assert "Your role: *viewer*" in shown(viewer)
    await event(bot, home_opened("UOPS"))

    async def skipped() -> bool:
        return bot.app[HOME].skipped == 1

    await wait_until(skipped)
    assert len(published_to(slack, "UOPS")) == 1

    # The Messages tab is not the Home: nothing read, nothing published, no debounce set
    # (the Home opened right after publishes).
    await event(bot, home_opened("UNEW", tab="messages"))
    await event(bot, home_opened("UNEW"))
    await wait_until(lambda: _published(slack, "UNEW"))
    assert bot.app[HOME].published == 3


async def _published(slack: SlackStub, user: str) -> bool:
    return bool(published_to(slack, user))


async def test_slack_s_url_verification_is_answered(make_bot: MakeBot) -> None:
    bot = await make_bot(drain_every_ms=HOUR_MS)
    body = json.dumps({"token": "legacy", "type": "url_verification", "challenge": "c-123"})
    resp = await bot.post(
        "/slack/events", data=body, headers={**sign(body), "Content-Type": "application/json"}
    )
    assert resp.status == 200 and "c-123" in await resp.text()


def test_a_part_that_cannot_be_read_is_one_line_and_the_rest_still_shows() -> None:
    down = "Redis unreachable: Error 111 connecting to redis:6379. Connection refused."
    overview = Overview(
        queues_error=down, incidents_error=down, cron_error="the drain cron's state is gone"
    )
    blocks = [b.to_dict() for b in home_blocks(overview, Role.VIEWER, int(time.time() * 1000))]
    text = json.dumps(blocks)
    assert f"queues not read: {down}" in text
    assert f"incidents not read: {down}" in text
    assert "drain cron not read: the drain cron's state is gone" in text
    assert "Your role: *viewer*" in text
    # A DB queue whose database is down is its own line beside the Redis queues.
    overview = Overview(queues=[snap("emails", waiting=4)], unreachable={"pg-jobs": "timeout"})
    text = json.dumps(
        [b.to_dict() for b in home_blocks(overview, Role.ADMIN, 0)], ensure_ascii=False
    )
    assert "*emails* healthy · waiting 4" in text and "*pg-jobs* not read: timeout" in text


def test_the_home_stays_within_slack_s_limits_and_counts_what_it_leaves_out() -> None:
    now = int(time.time() * 1000)
    incidents = [
        {
            "id": f"g-{n}",
            "title": f"Incident {n} " + "x" * 400,
            "queues": ["q"],
            "labels": {},
            "status": "open",
            "opened_at": now - n * 60_000,
            "channel_id": f"C{n}",
            "update": "u" * 2000,
            "updated_at": now,
            "updated_by": "slack:UOPS",
        }
        for n in range(25)
    ]
    overview = Overview(
        incidents=incidents,
        open_total=25,
        queues=[snap(f"queue-{n:03d}-" + "y" * 80, waiting=n) for n in range(60)],
    )
    view = home_view(overview, Role.OPERATOR, now)
    assert len(view["blocks"]) <= 100
    for block in view["blocks"]:
        for text in [block.get("text", {}), *block.get("elements", [])]:
            assert len(text.get("text", "")) <= 3000
    text = json.dumps(view["blocks"])
    assert text.count(":rotating_light:") == 20 and "and 5 more open" in text
    assert "and 10 more queues" in text


def test_a_queue_an_alert_names_that_is_not_known_is_said_so() -> None:
    _, blocks = digest_blocks(
        datetime.now(UTC).date(), 0, ([], 0), [], ["emails", "typo-queue"], [snap("emails")]
    )
    text = json.dumps([b.to_dict() for b in blocks])
    assert "*emails*: waiting 0 now" in text and "*typo-queue*: not a queue queueops knows" in text
    _, blocks = digest_blocks(datetime.now(UTC).date(), 0, "down", "down", ["emails"], "down")
    assert len(blocks) < 10 and "depth not read: down" in json.dumps([b.to_dict() for b in blocks])


def test_the_digest_time_is_hh_mm_utc_and_needs_the_updates_channel() -> None:
    at = parse_digest_at("9:05")
    assert at is not None and (at.hour, at.minute, at.tzinfo) == (9, 5, UTC)
    assert parse_digest_at(" ") is None
    for bad, says in [("9am", "HH:MM"), ("24:00", "00:00 to 23:59"), ("09:5", "HH:MM")]:
        with pytest.raises(ConfigError, match=f"INCIDENT_DIGEST_AT: .*{says}"):
            load_settings(
                redis_url=REDIS_URL, incident_digest_at=bad, incident_updates_channel=STAKEHOLDERS
            )
    with pytest.raises(ConfigError, match=r"INCIDENT_DIGEST_AT: .*INCIDENT_UPDATES_CHANNEL"):
        load_settings(redis_url=REDIS_URL, incident_digest_at="09:00")
    settings = load_settings(
        redis_url=REDIS_URL, incident_digest_at="9:00", incident_updates_channel=STAKEHOLDERS
    )
    assert settings.incident_digest_at == "09:00"


async def test_two_replicas_post_one_digest_with_open_and_recently_resolved_incidents(
    make_bot: MakeBot,
    slack: SlackStub,
    service: QueueService,
    redis: aioredis.Redis,
    prefix: str,
) -> None:
    await service.store.bullmq(service.ref("batch-jobs")).addBulk(
        [{"name": "email", "data": {"i": i}} for i in range(2)]
    )
    await service.store.bullmq(service.ref("dsar-jobs")).addBulk([{"name": "x", "data": {}}])
    # 00:00 UTC has passed today whenever this runs: a bot started after the time posts
    # that day's digest once, if no replica did.
    settings = {
        "incident_digest_at": "00:00",
        "incident_updates_channel": STAKEHOLDERS,
        "drain_every_ms": HOUR_MS,
    }
    one, two = await make_bot(**settings), await make_bot(**settings)
    await declare(one, slack, 'incident declare "Exports stuck" --queue batch-jobs', "d1")
    done, _ = await declare(one, slack, 'incident declare "Emails slow" --queue dsar-jobs', "d2")
    state = f"{prefix}-state"
    resolved = str(await redis.get(f"{state}:channel:{done}"))
    await press(
        one, slack, "incident_resolve", f"{resolved}|", user="UOPS", reply_to="r1", channel=done
    )
    await said(slack, "chat.postMessage", "Emails slow resolved", channel=done)

    async def is_resolved() -> bool:
        return await redis.hget(f"{state}:incident:{resolved}", "status") == "resolved"

    await wait_until(is_resolved)
    assert await redis.zcard(f"{state}:incidents:recent") == 2

    for _ in range(2):
        await one.app[TICKER].tick()
        await two.app[TICKER].tick()
    [digest] = digests(slack)
    text = json.dumps(digest.body["blocks"], ensure_ascii=False)
    assert "Daily digest" in text and "Open incidents (1)" in text
    assert "*Exports stuck* on batch-jobs" in text
    assert "*Emails slow* on dsar-jobs · lasted" in text  # resolved within the day
    assert "*batch-jobs*: waiting 2 now" in text
    assert "*dsar-jobs*: waiting 1 now" in text
    today = datetime.now(UTC).date().isoformat()
    assert await redis.ttl(f"{state}:digest:{today}") > 86_400
    # Posted: both replicas look next at tomorrow's time, which costs no Redis command.
    assert [await tick_cost(one), await tick_cost(two)] == [1, 1]
    assert len(digests(slack)) == 1
    assert one.app[DIGEST].posted + two.app[DIGEST].posted == 1


async def test_a_failed_post_gives_the_day_back_and_the_next_tick_posts(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    bot = await make_bot(
        incident_digest_at="00:00", incident_updates_channel=STAKEHOLDERS, drain_every_ms=HOUR_MS
    )
    slack.queued["chat.postMessage"] = [{"ok": False, "error": "not_in_channel"}]
    await bot.app[TICKER].tick()
    assert len(digests(slack)) == 1 and bot.app[DIGEST].posted == 0  # asked, refused
    today = datetime.now(UTC).date().isoformat()
    assert not await redis.exists(f"{prefix}-state:digest:{today}")
    await bot.app[TICKER].tick()
    assert len(digests(slack)) == 2 and bot.app[DIGEST].posted == 1
    [_, posted] = digests(slack)
    assert "No open incidents" in json.dumps(posted.body["blocks"])


async def test_an_idle_tick_with_the_digest_not_due_costs_what_one_without_it_does(
    make_bot: MakeBot, slack: SlackStub
) -> None:
    plain = await make_bot(drain_every_ms=HOUR_MS)
    bot = await make_bot(
        incident_digest_at="12:00", incident_updates_channel=STAKEHOLDERS, drain_every_ms=HOUR_MS
    )
    now = {"at": datetime.now(UTC).replace(hour=11, minute=0, second=0, microsecond=0)}
    digest = bot.app[DIGEST]
    digest.clock = lambda: now["at"]
    await plain.app[TICKER].tick()  # first use: the probe script is loaded
    await bot.app[TICKER].tick()
    without = [await tick_cost(plain) for _ in range(3)]
    assert [await tick_cost(bot) for _ in range(3)] == without == [1, 1, 1]
    assert digest.posted == 0 and digests(slack) == []

    now["at"] += timedelta(hours=1, seconds=1)  # 12:00:01: due
    await bot.app[TICKER].tick()
    assert digest.posted == 1 and len(digests(slack)) == 1
    assert digest.due == now["at"].replace(hour=12, second=0) + timedelta(days=1)
    assert await tick_cost(bot) == 1  # tomorrow's: not due, not even looked up
