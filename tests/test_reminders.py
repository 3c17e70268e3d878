"""Issue 15, section 4: update reminders. Through the real app (Bolt over HTTP with signed
requests), the Slack Web API stand-in, real Redis and the real tick (`bot.app[TICKER]`,
driven by hand: the configured cadence is an hour, so only these ticks run), with
INCIDENT_UPDATE_EVERY set to seconds so the intervals pass within the test."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from alert_helpers import wait_until
from slack_helpers import MakeBot, press, slash
from slack_stub import SlackStub
from test_incident_lifecycle import action_ids, declare, said, text_of

from bot.http_app import TICKER
from bot.incidents.reminders import REMIND_SNOOZE, parse_update_every
from bot.redis_client import commands_sent

HOUR_MS = 3_600_000


def reminders_in(slack: SlackStub, channel: str) -> list[str]:
    return [
        text_of(c.body)
        for c in slack.of("chat.postMessage")
        if c.body.get("channel") == channel and "no update for" in text_of(c.body)
    ]


async def tick_cost(bot: TestClient[Any, Any]) -> int:
    """The Redis commands one tick sent (the client's own counter, as the ticker's
    idle_tick_cost and tests/test_redis_cost.py count)."""
    ticker = bot.app[TICKER]
    before = commands_sent()
    await ticker.tick()
    return commands_sent() - before


def test_the_setting_is_read_per_severity_and_mistakes_are_one_line() -> None:
    assert parse_update_every("sev1=30m, sev2=1h") == {"sev1": 1_800_000, "sev2": 3_600_000}
    assert parse_update_every("") == {}
    for bad, says in [
        ("sev4=1m", "is not sevN=duration"),
        ("sev1", "is not sevN=duration"),
        ("sev1=1m,sev1=2m", "given twice"),
        ("sev1=soon", "is not a duration"),
        ("sev2=500ms", "shorter than 1s"),
    ]:
        try:
            parse_update_every(bad)
        except ValueError as err:
            assert says in str(err)
        else:
            raise AssertionError(bad)


async def test_a_quiet_incident_reminds_once_per_interval_snooze_delays_it_update_resets_it(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    bot = await make_bot(incident_update_every="sev2=2s", drain_every_ms=HOUR_MS)
    state = f"{prefix}-state"
    channel, _ = await declare(bot, slack, 'incident declare "Emails slow" --severity sev2', "d1")
    iid = str(await redis.get(f"{state}:channel:{channel}"))
    assert await redis.zscore(f"{state}:incidents:open", iid) is not None

    await bot.app[TICKER].tick()  # looks, not due yet: scored for its interval
    assert reminders_in(slack, channel) == []
    assert await tick_cost(bot) == 1  # open, not due: the tick's one command, nothing more
    await asyncio.sleep(2.2)
    await bot.app[TICKER].tick()
    [reminder] = reminders_in(slack, channel)
    assert "Nobody leads this incident yet" in reminder and "no update for 2s." in reminder
    posted = [c for c in slack.of("chat.postMessage") if "no update for" in text_of(c.body)]
    assert REMIND_SNOOZE in action_ids(posted[0].body)
    assert await redis.hget(f"{state}:incident:{iid}", "reminded_at")
    await bot.app[TICKER].tick()
    await bot.app[TICKER].tick()
    assert len(reminders_in(slack, channel)) == 1  # once per interval

    # A viewer may not snooze; an operator may, and nothing is said for 30 minutes.
    await press(bot, slack, REMIND_SNOOZE, f"{iid}|", user="UVIEW", reply_to="s0", channel=channel)
    await said(slack, "chat.postEphemeral", "needs the operator role", channel=channel)
    await press(bot, slack, REMIND_SNOOZE, f"{iid}|", user="UOPS", reply_to="s1", channel=channel)
    await said(slack, "chat.postMessage", "<@UOPS> snoozed the update reminder", channel=channel)
    await asyncio.sleep(2.2)
    assert await tick_cost(bot) == 1  # snoozed: not due, so not even read
    assert len(reminders_in(slack, channel)) == 1

    # An update resets the interval: quiet for 2s after it, not after the opening.
    other, _ = await declare(bot, slack, 'incident declare "Exports stuck" --severity sev2', "d2")
    await slash(bot, slack, "incident lead <@UANN>", user="UOPS", reply_to="l1", channel=other)
    await said(slack, "chat.postMessage", "<@UANN> leads this incident", channel=other)
    await asyncio.sleep(1.5)
    await slash(
        bot, slack, 'incident update "restarting"', user="UOPS", reply_to="u1", channel=other
    )
    await said(slack, "respond:u1", "")
    await asyncio.sleep(0.8)  # 2.3s after the opening, 0.8s after the update
    await bot.app[TICKER].tick()
    assert reminders_in(slack, other) == []
    await asyncio.sleep(1.5)
    await bot.app[TICKER].tick()
    [reminder] = reminders_in(slack, other)
    assert "<@UANN> no update for 2s." in reminder  # the lead, counted from the update

    # Resolved (its button): out of the open set, so no tick reads it again.
    resolved = str(await redis.get(f"{state}:channel:{other}"))
    await press(
        bot, slack, "incident_resolve", f"{resolved}|", user="UOPS", reply_to="r1", channel=other
    )
    await said(slack, "chat.postMessage", "Exports stuck resolved", channel=other)

    async def left() -> bool:  # resolve removes it after the postmortem
        return await redis.zscore(f"{state}:incidents:open", resolved) is None

    await wait_until(left)
    assert await redis.zscore(f"{state}:incidents:open", iid) is not None


async def test_two_replicas_remind_once(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    one = await make_bot(incident_update_every="sev1=1s", drain_every_ms=HOUR_MS)
    two = await make_bot(incident_update_every="sev1=1s", drain_every_ms=HOUR_MS)
    channel, _ = await declare(one, slack, 'incident declare "Down" --severity sev1', "d1")
    await asyncio.sleep(1.2)
    await asyncio.gather(one.app[TICKER].tick(), two.app[TICKER].tick())
    await asyncio.gather(one.app[TICKER].tick(), two.app[TICKER].tick())
    assert len(reminders_in(slack, channel)) == 1


async def test_an_idle_tick_without_open_incidents_costs_one_command(
    make_bot: MakeBot, slack: SlackStub
) -> None:
    bot = await make_bot(incident_update_every="sev1=1s,sev2=1s", drain_every_ms=HOUR_MS)
    await bot.app[TICKER].tick()  # first use: the probe script is loaded
    assert [await tick_cost(bot) for _ in range(3)] == [1, 1, 1]
    assert bot.app[TICKER].idle_tick_cost == 1
