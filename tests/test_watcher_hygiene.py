"""Watcher hygiene (issue 15, part 6): one open incident per rule and queue, a cooldown
before a resolved rule opens again, flapping collapsed into one incident with a count,
`Acknowledge` and `Snooze 1h` on watcher incidents, thresholds per queue.

The watcher on real Redis, fed sequences of QueueWork a minute apart (the times compared
are the tick's, so half an hour plays in a second); the buttons and the incident channel
through the real app (signed requests, the Slack stand-in)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis
from alert_helpers import wait_until
from slack_helpers import MakeBot, press
from slack_stub import SlackStub

from bot.alerts.models import AlertEvent
from bot.alerts.watcher import (
    QueueOverride,
    Watcher,
    WatchRules,
    parse_overrides,
    snooze,
    snooze_key,
)
from bot.config import load_settings
from bot.errors import ConfigError
from bot.http_app import TICKER
from bot.incidents.messages import status_message
from bot.queues.models import ProbeResult, QueueWork
from bot.queues.service import QueueService

MIN = 60_000
T0 = 1_800_000_000_000
ONLY_DEPTH = WatchRules(
    depth=5,
    oldest_ms=0,
    failed_pct=0,
    dlq_growth=False,
    no_workers_ms=0,
    no_completions_ms=0,
    stalled_rising=False,
)
"""Only the depth rule, over 5 jobs: the sequences below are about what happens around it."""


def work(ready: int, name: str = "q", prefix: str = "bull") -> QueueWork:
    return QueueWork(
        name=name, prefix=prefix, is_paused=False, ready=ready, due_delayed=0, stalled=0
    )


class Recorder:
    """A watcher on real Redis whose emitted events are kept, ticked at chosen minutes."""

    def __init__(self, redis: aioredis.Redis, state: str, rules: WatchRules) -> None:
        self.events: list[AlertEvent] = []
        self.watcher = Watcher(rules, self._emit, redis, state)

    async def _emit(self, event: AlertEvent) -> None:
        self.events.append(event)

    async def at(self, minute: float, *queues: QueueWork) -> list[tuple[str, str]]:
        """Tick at T0 + minute; the (status, group) of what this tick emitted."""
        before = len(self.events)
        await self.watcher.on_tick(ProbeResult(queues=list(queues), at_ms=T0 + int(minute * MIN)))
        return [(e.status, e.group_key) for e in self.events[before:]]


@pytest.fixture
async def state(redis: aioredis.Redis, prefix: str) -> Any:
    name = f"{prefix}-hygiene"
    yield name
    async for key in redis.scan_iter(match=f"{name}:*", count=500):
        await redis.delete(key)


DEPTH_Q = "watcher:depth:q"


async def test_a_resolved_rule_waits_out_its_cooldown_across_a_restart(
    redis: aioredis.Redis, state: str
) -> None:
    rules = replace(ONLY_DEPTH, cooldown_ms=10 * MIN, flap_opens=0)
    w = Recorder(redis, state, rules)
    assert await w.at(0, work(10)) == [("firing", DEPTH_Q)]
    assert await w.at(1, work(10)) == []  # still firing: one incident, said once
    assert await w.at(2, work(0)) == [("resolved", DEPTH_Q)]
    stored = f"{state}:watcher:resolved:{DEPTH_Q}"
    assert await redis.get(stored) == str(T0 + 2 * MIN)
    assert 0 < await redis.pttl(stored) <= 10 * MIN  # bounded: gone with the cooldown
    assert await w.at(3, work(10)) == []  # inside the cooldown: held
    # A restart (or another replica): the cooldown is in Redis, not in the process.
    again = Recorder(redis, state, rules)
    assert await again.at(5, work(10)) == []
    assert await again.at(11.5, work(10)) == []  # 9.5 min after the resolve
    assert await again.at(12, work(10)) == [("firing", DEPTH_Q)]  # 10 min: open again
    # One open incident per rule and queue: a replica starting now sees it firing.
    replica = Recorder(redis, state, rules)
    assert await replica.at(12.5, work(10)) == []


async def test_an_idle_tick_adds_no_redis_command(redis: aioredis.Redis, state: str) -> None:
    w = Recorder(redis, state, ONLY_DEPTH)
    await w.at(0, work(0))  # the first tick reads what an earlier run left firing
    before = int((await redis.info("stats"))["total_commands_processed"])
    for minute in range(1, 6):
        await w.at(minute, work(1))
    after = int((await redis.info("stats"))["total_commands_processed"])
    assert after - before == 1  # the INFO itself


async def test_flapping_keeps_one_incident_with_a_count(redis: aioredis.Redis, state: str) -> None:
    rules = replace(ONLY_DEPTH, cooldown_ms=MIN, flap_opens=3, flap_window_ms=30 * MIN)
    w = Recorder(redis, state, rules)
    deep, clear = work(10), work(0)
    assert await w.at(0, deep) == [("firing", DEPTH_Q)]
    assert await w.at(1, clear) == [("resolved", DEPTH_Q)]
    assert await w.at(2, deep) == [("firing", DEPTH_Q)]  # the cooldown (1 min) is over
    assert await w.at(3, clear) == [("resolved", DEPTH_Q)]
    assert await w.at(4, deep) == [("firing", DEPTH_Q)]  # the third open: flapping
    assert w.events[-1].summary.endswith("flapping: 3 times in 30 minutes")
    assert await w.at(5, clear) == []  # not resolved: the incident stays open
    assert await w.at(6, deep) == [("firing", DEPTH_Q)]  # the same group, a new count
    assert w.events[-1].summary.endswith("flapping: 4 times in 30 minutes")
    assert await w.at(7, clear) == []
    assert await w.at(36, clear) == []  # 29 minutes clear
    assert await w.at(37, clear) == [("resolved", DEPTH_Q)]  # 30 minutes clear: settled
    opens = f"{state}:watcher:opens:{DEPTH_Q}"
    assert await redis.zcard(opens) == 4 and 0 < await redis.pttl(opens) <= 30 * MIN


async def test_a_snooze_silences_one_rule_on_one_queue(redis: aioredis.Redis, state: str) -> None:
    rules = replace(ONLY_DEPTH, cooldown_ms=0, flap_opens=0)
    w = Recorder(redis, state, rules)
    assert await w.at(0, work(10), work(10, "r")) == [
        ("firing", DEPTH_Q),
        ("firing", "watcher:depth:r"),
    ]
    await snooze(redis, state, DEPTH_Q, T0 + 60 * MIN)
    assert await w.at(1, work(0), work(0, "r")) == [("resolved", "watcher:depth:r")]
    assert await w.at(30, work(0), work(0, "r")) == []  # q's resolve waits for the snooze
    assert await w.at(60, work(0), work(0, "r")) == [("resolved", DEPTH_Q)]


async def test_thresholds_per_queue(redis: aioredis.Redis, state: str) -> None:
    overrides = parse_overrides(
        "billing-*:depth=5000,oldest=30m;bull:pay*:depth=50;billing-eu:depth=10"
    )
    assert overrides[0] == QueueOverride("billing-*", (("depth", 5000), ("oldest_ms", 30 * MIN)))
    rules = replace(ONLY_DEPTH, depth=100, overrides=overrides)
    assert rules.for_queue("bull", "billing-us").depth == 5000
    assert rules.for_queue("bull", "billing-eu").depth == 10  # a later entry wins
    assert rules.for_queue("other", "payments").depth == 100  # `bull:pay*` is that prefix's
    w = Recorder(redis, state, rules)
    fired = await w.at(
        0,
        work(1000, "billing-us"),  # under 5000
        work(1000, "orders"),  # over the default 100
        work(60, "payments"),  # over 50
        work(60, "payments", prefix="other"),  # under the default 100
    )
    assert sorted(fired) == [
        ("firing", "watcher:depth:orders"),
        ("firing", "watcher:depth:payments"),
    ]


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("watch_overrides", "billing-*:depth=lots", "WATCH_OVERRIDES: depth='lots' is not"),
        ("watch_overrides", "billing-*", "WATCH_OVERRIDES: 'billing-*' is not QUEUE:name=value"),
        ("watch_overrides", "q:speed=3", "WATCH_OVERRIDES: 'speed=3' in 'q': use depth="),
        ("watch_overrides", "q:failed_pct=200", "WATCH_OVERRIDES: failed_pct=200 is outside"),
        ("watch_overrides", "q:oldest=soon", "WATCH_OVERRIDES: 'soon' is not a duration"),
        ("watch_flap", "3", "WATCH_FLAP: '3' is not N/M"),
        ("watch_flap", "3/later", "WATCH_FLAP: 'later' is not a duration"),
        ("watch_cooldown_ms", "soon", "WATCH_COOLDOWN: 'soon' is not a duration"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(variable: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(**{variable: value})
    assert str(err.value).startswith(says) and "\n" not in str(err.value)


def test_only_watcher_incidents_have_the_watcher_buttons() -> None:
    """The buttons go by the group the incident's id hashes, not by labels alone."""
    incident = {
        "id": "0123456789abcdef0123-1",  # not the hash of watcher:depth:q
        "title": "QueueDepth",
        "queues": ["q"],
        "labels": {"rule": "depth", "queue": "q"},
        "starts_at": T0,
        "opened_at": T0,
    }
    ids = json.dumps([b.to_dict() for b in status_message(incident, [], drain_available=False)])
    assert "incident_pause" in ids and "incident_ack" not in ids and "incident_snooze" not in ids


def buttons_of(call: Any) -> dict[str, str]:
    return {
        e["action_id"]: e["value"]
        for b in call.body["blocks"]
        if b["type"] == "actions"
        for e in b.get("elements", [])
        if "value" in e
    }


async def test_acknowledge_and_snooze_buttons_on_a_watcher_incident(
    make_bot: MakeBot,
    slack: SlackStub,
    service: QueueService,
    redis: aioredis.Redis,
    prefix: str,
) -> None:
    queue = service.store.bullmq(service.ref("q"))
    await queue.addBulk([{"name": "job", "data": {"i": i}} for i in range(10)])
    bot = await make_bot(queues="q", watch_depth=5, drain_every_ms=3_600_000)
    ticker = bot.app[TICKER]
    await ticker.tick()
    [status] = await slack.wait_for("chat.postMessage")
    buttons = buttons_of(status)
    assert {"incident_ack", "incident_snooze"} <= set(buttons)

    async def click(action: str, user: str) -> None:
        await press(bot, slack, action, buttons[action], user=user, reply_to="x", channel="C0INC1")

    await click("incident_ack", "UVIEW")  # a viewer: refused, privately
    [refused] = await slack.wait_for("chat.postEphemeral")
    assert "needs the operator role" in refused.body["text"]
    await click("incident_ack", "UOPS")
    posts = await slack.wait_for("chat.postMessage", 2)
    assert posts[1].body["text"] == "<@UOPS> acknowledged this incident"
    [update] = await slack.wait_for("chat.update")
    assert "Acknowledged by <@UOPS>" in json.dumps(update.body["blocks"])

    await click("incident_snooze", "UOPS")
    posts = await slack.wait_for("chat.postMessage", 3)
    assert posts[2].body["text"].startswith("<@UOPS> snoozed the watcher's depth rule on q until")
    updates = await slack.wait_for("chat.update", 2)
    assert "Watcher snoozed until" in json.dumps(updates[1].body["blocks"])
    key = snooze_key(f"{prefix}-state", "watcher:depth:q")
    assert 59 * MIN < await redis.pttl(key) <= 61 * MIN

    await queue.drain()
    await ticker.tick()  # clear, but snoozed: the watcher says nothing for the hour
    await asyncio.sleep(0.3)
    assert len(slack.of("chat.postMessage")) == 3
    assert await redis.sismember(f"{prefix}-state:watcher:active", "watcher:depth:q")
    await redis.delete(key)  # the hour is over
    await ticker.tick()
    posts = await slack.wait_for("chat.postMessage", 4)
    assert "Resolved" in json.dumps(posts[3].body["blocks"])
    await redis.delete(f"{prefix}-state:watcher:resolved:watcher:depth:q")


async def test_flapping_in_the_app_updates_the_open_incident(
    make_bot: MakeBot,
    slack: SlackStub,
    service: QueueService,
    redis: aioredis.Redis,
    prefix: str,
) -> None:
    queue = service.store.bullmq(service.ref("q"))
    bot = await make_bot(
        queues="q",
        watch_depth=5,
        watch_cooldown_ms="0",
        watch_flap="2/1h",
        drain_every_ms=3_600_000,
    )
    ticker = bot.app[TICKER]
    state = f"{prefix}-state"

    async def deep() -> None:
        await queue.addBulk([{"name": "job", "data": {"i": i}} for i in range(10)])
        await ticker.tick()

    async def clear() -> None:
        await queue.drain()
        await ticker.tick()

    try:
        await deep()
        await slack.wait_for("conversations.create")
        await clear()
        await wait_until(lambda: asyncio.sleep(0, len(slack.of("chat.postMessage")) >= 3))
        await deep()  # the second open within the hour: flapping, a new incident
        [_, second] = await slack.wait_for("conversations.create", 2)
        posts = await slack.wait_for("chat.postMessage", 4)
        assert "flapping: 2 times in 1 hour" in json.dumps(posts[3].body["blocks"])
        await clear()  # flapping: no resolve
        await deep()  # the same incident, its count updated on the status message
        update = await wait_until(
            lambda: asyncio.sleep(
                0,
                [
                    u
                    for u in slack.of("chat.update")
                    if "flapping: 3 times in 1 hour" in json.dumps(u.body["blocks"])
                ],
            )
        )
        assert update[0].body["channel"] == "C0INC2"
        assert len(slack.of("conversations.create")) == 2
        await asyncio.sleep(0.3)
        assert not any(
            "Resolved" in json.dumps(p.body.get("blocks", []))
            for p in slack.of("chat.postMessage")[3:]
        )
        assert second.body["name"]
    finally:
        await redis.delete(f"{state}:watcher:opens:watcher:depth:q")
