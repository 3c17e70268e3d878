"""The tick, the watcher's rules, and the depth chart."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from slack_helpers import MakeBot
from slack_stub import SlackStub

from bot.alerts.watcher import WatchRules, breaches
from bot.charts import DepthChart
from bot.http_app import TICKER
from bot.queues.models import QueueWork
from bot.queues.service import QueueService

NOW = 1_800_000_000_000


def work(**kw: Any) -> QueueWork:
    base: dict[str, Any] = {
        "name": "q",
        "is_paused": False,
        "ready": 0,
        "due_delayed": 0,
        "stalled": 0,
    }
    return QueueWork(**{**base, **kw})


@pytest.mark.parametrize(
    ("now", "before", "rules"),
    [
        (work(ready=1001), None, {"depth"}),
        (work(ready=3, oldest_runnable_since_ms=NOW - 16 * 60_000), None, {"oldest"}),
        (work(ready=3, oldest_runnable_since_ms=NOW - 16 * 60_000, is_paused=True), None, set()),
        (work(dlq_depth=4), work(dlq_depth=3), {"dlq"}),
        (work(failed=10, completed=100), work(failed=4, completed=90), {"failed"}),
        (work(failed=6, completed=1000), work(failed=2, completed=990), set()),  # 4 < 5
        (work(failed=10, completed=200), work(failed=4, completed=100), set()),  # 5.6%
    ],
)
def test_rules(now: QueueWork, before: QueueWork | None, rules: set[str]) -> None:
    assert {b.rule for b in breaches(WatchRules(), now, before, NOW)} == rules


async def test_a_breach_opens_an_incident_with_a_chart_and_its_end_resolves_it(
    make_bot: MakeBot,
    slack: SlackStub,
    service: QueueService,
    redis: aioredis.Redis,
    prefix: str,
) -> None:
    queue = service.store.bullmq(service.ref("q"))
    await queue.add("job", {})
    bot = await make_bot(queues="q", watch_depth=5, drain_every_ms=3_600_000)
    ticker = bot.app[TICKER]
    assert (await ticker.tick()) is not None  # depth 1: fine
    await queue.addBulk([{"name": "job", "data": {"i": i}} for i in range(9)])
    await ticker.tick()  # depth 10 > 5
    [created] = await slack.wait_for("conversations.create")
    assert "queuedepth-q" in created.body["name"]
    [upload] = await slack.wait_for("upload")
    assert upload.body["png"] and upload.body["size"] > 1000
    await slack.wait_for("files.completeUploadExternal")
    await ticker.tick()  # still deep: no second incident
    await queue.drain()
    await ticker.tick()
    posts = await slack.wait_for("chat.postMessage", 3)
    assert "Resolved" in str(posts[1].body["blocks"])
    assert len(slack.of("conversations.create")) == 1
    samples = await redis.lrange(f"{prefix}-state:depth:{prefix}:q", 0, -1)
    assert [int(s.split(":")[1]) for s in samples] == [0, 10, 10, 1]


async def test_the_chart_needs_two_samples(redis: aioredis.Redis, prefix: str) -> None:
    async def full_name(word: str) -> str | None:
        return f"bull:{word}"

    chart = DepthChart(redis, f"{prefix}-state:depth:", full_name)
    key = f"{prefix}-state:depth:bull:q"
    assert await chart.png(["q"]) is None
    ms = int(time.time() * 1000)
    await redis.lpush(key, f"{ms - 600_000}:3", f"{ms}:12")
    png = await chart.png(["q"])
    assert png is not None and png.startswith(b"\x89PNG")


async def test_snapshot_chart_in_slack_and_as_a_sparkline(
    make_bot: MakeBot, slack: SlackStub, service: QueueService
) -> None:
    from slack_helpers import slash

    from bot.render_text import render_text
    from commands.snapshot import SnapshotReply

    queue = service.store.bullmq(service.ref("q"))
    bot = await make_bot(queues="q", drain_every_ms=3_600_000)
    for n in (2, 5):
        await queue.addBulk([{"name": "job", "data": {}} for _ in range(n)])
        await bot.app[TICKER].tick()
    await slash(bot, slack, "snapshot q --chart", user="UOPS")
    [reply] = await slack.wait_for("respond:r1")
    assert "picture below" in str(reply.body["blocks"])
    [upload] = await slack.wait_for("upload")
    assert upload.body["png"]
    text = render_text(
        SnapshotReply(queues=await service.snapshot(["q"]), series={"q": [(1, 2), (2, 7)]}).view()
    )
    assert "q  ▁█  min 2, max 7, now 7" in text
