"""Issue 14, "is anything working on this queue?": npm bullmq Workers seen by CLIENT LIST
(connected, then closed), the `workers` command and the snapshot's count and `no workers`
mark (and cron mode's last drain instead), a Redis refusing CLIENT LIST, BullMQ's metrics
written by a real Worker read back as throughput, and the watcher's new rules."""

from __future__ import annotations

import asyncio
import shlex
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from conftest import REDIS_URL, NodeCall

from bot.alerts.models import AlertEvent
from bot.alerts.watcher import Streaks, Watcher, WatchRules
from bot.charts import DepthChart
from bot.config import load_settings
from bot.dispatch import make_dispatcher
from bot.metrics import QueueGauges
from bot.queues.bullmq.throughput import from_samples, minute_counts, time_to_empty_ms
from bot.queues.bullmq.workers import client_name, match_workers
from bot.queues.keys import QueueRef
from bot.queues.models import ProbeResult, QueueWork
from bot.queues.service import QueueService
from bot.render_text import render_text
from bot.roles import Role
from bot.slack.blocks import render_blocks
from commands.reply import Reply
from commands.snapshot import SnapshotReply
from scheduler.state import CronState, DrainRun

HOUR_MS = 3_600_000
MIN = 60_000


async def until(check: Callable[[], Awaitable[bool]], *, within_s: float = 15.0) -> None:
    """Wait for `check` to hold (Workers connect and close asynchronously)."""
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.1)


def dispatcher_for(redis: aioredis.Redis, prefix: str, queues: str) -> Any:
    settings = load_settings(
        redis_url=REDIS_URL, prefix=prefix, state_prefix=f"{prefix}-state", queues=queues
    )
    return make_dispatcher(redis, settings, rate_limited=False, metrics=False)


async def run(dispatcher: Any, line: str) -> Reply:
    outcome = await dispatcher.run(
        shlex.split(line), actor="test", role=Role.VIEWER, transport="shell", confirmed=True
    )
    reply: Reply = outcome.reply
    return reply


# --- CLIENT LIST, with real npm bullmq Workers ---------------------------------------------


async def test_workers_connected_are_listed_counted_and_gone_once_closed(
    redis: aioredis.Redis, prefix: str, service: QueueService, node: NodeCall
) -> None:
    # Delayed jobs: work the Workers will not take during the test, so the snapshot counts.
    await node("add", queue="a", jobs=[{"name": "later", "opts": {"delay": HOUR_MS}}])
    await node("add", queue="b", jobs=[{"name": "later", "opts": {"delay": HOUR_MS}}])
    running = asyncio.create_task(node("workers", queue="a", count=2, seconds=4))
    named = asyncio.create_task(node("workers", queue="b", count=1, seconds=4, name="billing"))

    async def connected() -> bool:
        rows = {q.name: len(q.workers or []) for q in await service.workers()}
        return rows.get("a") == 2 and rows.get("b") == 1

    await until(connected)
    [a] = await service.workers("a")
    assert a.workers is not None and len(a.workers) == 2
    assert all(w.address.startswith("127.0.0.1:") and w.worker_name is None for w in a.workers)
    assert all(w.age_s >= 0 and w.idle_s >= 0 for w in a.workers)
    [b] = await service.workers("b")
    assert [w.worker_name for w in b.workers or []] == ["billing-0"]

    snaps = {s.name: s for s in await service.snapshot(["a", "b"])}
    assert (snaps["a"].workers, snaps["b"].workers) == (2, 1)
    dispatcher = dispatcher_for(redis, prefix, "a,b")
    reply = await run(dispatcher, "workers")
    assert reply.ok and reply.data()["known"] is True
    assert [len(q["workers"]) for q in reply.data()["queues"]] == [2, 1]
    text = render_text(reply.view())
    assert "a: 2 workers" in text and "billing-0" in text and "bzpopmin" in text.lower()
    assert (await run(dispatcher, "workers a")).data()["queues"][0]["name"] == "a"

    assert (await running)["workers"] == 2 and (await named)["workers"] == 1

    async def gone() -> bool:
        return all(not q.workers for q in await service.workers())

    await until(gone)
    assert {s.name: s.workers for s in await service.snapshot(["a", "b"])} == {"a": 0, "b": 0}


def test_connection_names_are_matched_as_npm_bullmq_matches_them() -> None:
    """queue-getters.js getWorkers: the name exactly, or followed by `:w:<name>`; a
    QueueEvents connection (`:qe`) and other prefixes are not workers."""
    orders, tagged = QueueRef("bull", "orders"), QueueRef("{bull}", "a:b")
    assert client_name(orders) == "bull:b3JkZXJz"  # Buffer.from('orders').toString('base64')
    clients = [
        {"name": "bull:b3JkZXJz", "addr": "10.0.0.1:1", "age": "7", "idle": "1", "cmd": "bzpopmin"},
        {"name": "bull:b3JkZXJz:w:x:w:y", "addr": "10.0.0.2:2", "age": "9", "idle": "0"},
        {"name": "bull:b3JkZXJz:qe", "addr": "10.0.0.3:3"},
        {"name": "other:b3JkZXJz", "addr": "10.0.0.4:4"},
        {"name": "", "addr": "10.0.0.5:5"},
        {"name": client_name(tagged), "addr": "10.0.0.6:6", "node": "127.0.0.1:7000"},
        # The same Worker's cluster client on another node: counted once (npm's rule).
        {"name": client_name(tagged), "addr": "10.0.0.6:7", "node": "127.0.0.1:7001"},
        {"name": client_name(tagged), "addr": "10.0.0.7:6", "node": "127.0.0.1:7000"},
    ]
    found = match_workers(clients, [orders, tagged])
    assert [(w.address, w.worker_name) for w in found[orders]] == [
        ("10.0.0.2:2", "x:w:y"),  # oldest first
        ("10.0.0.1:1", None),
    ]
    assert [w.node for w in found[tagged]] == ["127.0.0.1:7000"] * 2


async def test_a_snapshot_with_workers_is_two_commands_for_five_queues(
    redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    """The snapshot script and one CLIENT LIST, whatever the number of queues (up to 40);
    counted by the client's own counter on queueops' client."""
    from bot.redis_client import commands_sent, make_redis

    names = [f"q{i}" for i in range(5)]
    for name in names:
        await node("add", queue=name, jobs=[{"name": "later", "opts": {"delay": HOUR_MS}}])
    settings = load_settings(redis_url=REDIS_URL, prefix=prefix, queues=",".join(names))
    client = make_redis(settings)
    try:
        service = QueueService(client, prefixes=[prefix], queues=names)
        await service.snapshot()  # loads the script
        before = commands_sent()
        snaps = await service.snapshot()
        assert commands_sent() - before == 2
        assert [s.workers for s in snaps] == [0] * 5
    finally:
        await client.aclose()


# --- the `no workers` mark, and cron mode --------------------------------------------------


async def test_waiting_without_workers_is_marked_and_cron_mode_shows_the_last_drain(
    redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    await node("add", queue="a", jobs=[{"name": "send", "data": {}}] * 3)
    dispatcher = dispatcher_for(redis, prefix, "a")
    state = CronState(redis, f"{prefix}-state", default_mode="always-on", default_every_ms=MIN)
    try:
        await state.set_mode("always-on")  # workers are meant to be connected
        reply = await run(dispatcher, "snapshot")
        [row] = reply.data()["queues"]
        assert row["workers"] == 0 and row["status"] == "no workers"
        assert "no workers" in render_text(reply.view())
        assert ":no_entry: *a*" in str([b.to_dict() for b in render_blocks(reply.view())])

        await state.set_mode("cron")
        [row] = (await run(dispatcher, "snapshot")).data()["queues"]
        assert row["status"] != "no workers"  # expected between drains: no drain yet
        await redis.set(state.lease_key, "me", px=60_000)
        failed = DrainRun(at_ms=1, queues=["a"], status=500, error="HTTP 500")
        assert await state.record(failed, "me") >= 0
        reply = await run(dispatcher, "snapshot")
        assert reply.data()["queues"][0]["status"] == "drain failed"
        assert "last drain failed: HTTP 500" in render_text(reply.view())
        assert await state.record(DrainRun(at_ms=2, queues=["a"], status=200), "me") >= 0
        reply = await run(dispatcher, "snapshot")  # drained: the depth and age speak again
        assert reply.data()["queues"][0]["status"] == "healthy"
        assert "last drain ok" in render_text(reply.view())
    finally:
        await redis.delete(state.key, state.lease_key, state.history_key)


# --- a Redis that refuses CLIENT LIST ------------------------------------------------------


@pytest_asyncio.fixture
async def no_client_list(redis: aioredis.Redis) -> AsyncIterator[aioredis.Redis]:
    """A real ACL user of the session's Redis without the `client` command (as managed
    Redis that refuse CLIENT LIST are), deleted after."""
    user, password = f"qo-noclient-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await redis.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all", "-client"
    )
    client = aioredis.Redis.from_url(
        REDIS_URL, username=user, password=password, decode_responses=True
    )
    try:
        yield client
    finally:
        await client.aclose()
        await redis.execute_command("ACL", "DELUSER", user)


async def test_a_redis_refusing_client_list_says_workers_unknown_once(
    no_client_list: aioredis.Redis, redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    with pytest.raises(aioredis.ResponseError):
        await no_client_list.client_list()
    for name in ("a", "b"):
        await node("add", queue=name, jobs=[{"name": "send", "data": {}}])
    service = QueueService(no_client_list, prefixes=[prefix])
    snaps = await service.snapshot(["a", "b"])
    assert [(s.workers, s.workers_unknown) for s in snaps] == [(None, True), (None, True)]
    dispatcher = dispatcher_for(no_client_list, prefix, "a,b")
    reply = await run(dispatcher, "snapshot")
    assert reply.ok and [q["status"] for q in reply.data()["queues"]] == ["healthy"] * 2
    assert render_text(reply.view()).count("workers: unknown") == 1
    listing = await run(dispatcher, "workers")
    assert listing.ok and listing.data()["known"] is False
    assert render_text(listing.view()).count("workers: unknown") == 1


# --- throughput: BullMQ metrics written by a real Worker -----------------------------------


async def test_metrics_written_by_a_worker_are_read_as_throughput(
    redis: aioredis.Redis, prefix: str, service: QueueService, node: NodeCall
) -> None:
    jobs = [{"name": "ok", "data": {}}] * 4 + [{"name": "bad", "data": {"fail": True}}] * 2
    await node("add", queue="m", jobs=jobs)
    done = await node("workers", queue="m", count=1, seconds=1.5, maxDataPoints=60)
    assert (done["completed"], done["failed"]) == (4, 2)
    # npm bullmq's layout (collectMetrics): the hash's count is every job finished.
    base = QueueRef(prefix, "m").key("metrics:")
    assert await redis.hget(f"{base}completed", "count") == "4"
    assert await redis.hget(f"{base}failed", "count") == "2"
    await node("add", queue="m", jobs=[{"name": "next", "data": {}}] * 10)
    [snap] = await service.snapshot(["m"])
    rate = snap.throughput
    assert rate is not None and rate.source == "metrics"
    # Within one minute: 4 and 2 over at least a minute (a minute boundary may split them).
    assert 0 < (rate.completed_per_min or 0) <= 4 and 0 < (rate.failed_per_min or 0) <= 2
    assert snap.time_to_empty_ms == time_to_empty_ms(10, rate) and snap.time_to_empty_ms
    text = render_text((await run(dispatcher_for(redis, prefix, "m"), "snapshot")).view())
    assert "completed/min" in text and "BullMQ metrics" in text and "for 10 waiting" in text
    # The tick's probe reads the same counter, for the watcher and /metrics.
    [work] = (await service.probe(["m"])).queues
    assert work.metrics_completed == 4
    # The depth chart gets completed and failed per minute beside the depth.
    charted = await run(dispatcher_for(redis, prefix, "m"), "snapshot m --chart")
    assert isinstance(charted, SnapshotReply) and charted.series is not None
    lines = charted.series
    assert sum(n for _, n in lines["m completed/min"]) == 4
    assert sum(n for _, n in lines["m failed/min"]) == 2
    assert "completed and failed per minute" in render_text(charted.view())
    chart = DepthChart(redis, f"{prefix}-state:depth:", lambda w: _full(prefix, w))
    assert set(await chart.rates(["m"])) == {"m completed/min", "m failed/min"}
    await redis.lpush(f"{prefix}-state:depth:{prefix}:m", f"{time.time_ns() // 10**6 - MIN}:3")
    await redis.lpush(f"{prefix}-state:depth:{prefix}:m", f"{time.time_ns() // 10**6}:10")
    png = await chart.png(["m"])
    assert png is not None and png.startswith(b"\x89PNG")


async def _full(prefix: str, word: str) -> str | None:
    return f"{prefix}:{word}"


def test_per_minute_counts_follow_collect_metrics_layout() -> None:
    now = 100 * MIN + 30_000  # half way through minute 100
    # Still in prevTS' minute: 3 so far, data[0..] the minutes before (newest first).
    assert minute_counts(["13", str(100 * MIN + 1), "10"], ["4", "2", "9", "9"], now) == (
        3 + 4 + 2 + 9 + 9,
        4.5,
    )
    # prevTS' minute (97) is over: its 6 jobs, then 2 idle minutes (98, 99) before now.
    assert minute_counts(["16", str(97 * MIN), "10"], ["5"], now) == (6 + 5, 4.5)
    assert minute_counts([None, None, None], [], now) is None  # never recorded
    assert minute_counts(["1", None, None], [], now) == (1, 1.0)
    # Long idle: every minute of the window empty.
    assert minute_counts(["16", str(10 * MIN), "10"], ["5"], now) == (0, 4.5)


def test_the_rate_from_depth_samples_and_time_to_empty() -> None:
    now = 10 * MIN
    points = [(now - 4 * MIN, 100), (now - 2 * MIN, 80), (now - MIN, 90), (now, 60)]
    rate = from_samples(points, now)
    assert rate is not None and rate.source == "samples" and rate.completed_per_min == 12.5
    assert from_samples(points[:1], now) is None
    assert time_to_empty_ms(125, rate) == 10 * MIN
    assert time_to_empty_ms(0, None) == 0 and time_to_empty_ms(5, None) is None


def test_metrics_export_completed_and_failed_per_minute() -> None:
    from prometheus_client import REGISTRY

    gauges = QueueGauges()

    def tick(at: int, completed: int, failed: int, metrics: int | None) -> None:
        q = QueueWork(
            name="rate-q",
            is_paused=False,
            ready=0,
            due_delayed=0,
            stalled=0,
            completed=completed,
            failed=failed,
            metrics_completed=metrics,
        )
        gauges.export(ProbeResult(queues=[q], at_ms=at))

    def value(outcome: str) -> float | None:
        return REGISTRY.get_sample_value(
            "queueops_queue_jobs_per_minute", {"queue": "rate-q", "outcome": outcome}
        )

    tick(0, 0, 0, 100)
    assert value("completed") is None
    tick(2 * MIN, 0, 4, 130)  # removed on completion: only the metrics counter grew
    assert (value("completed"), value("failed")) == (15.0, 2.0)
    tick(3 * MIN, 5, 4, None)  # no metrics: the completed set's growth
    assert value("completed") == 5.0
    gauges.export(ProbeResult(queues=[], at_ms=4 * MIN))
    assert value("completed") is None


# --- the watcher's rules on QueueWork sequences --------------------------------------------


def work(**kw: Any) -> QueueWork:
    return QueueWork(
        **{"name": "q", "is_paused": False, "ready": 0, "due_delayed": 0, "stalled": 0, **kw}
    )


def rules_fired(
    sequence: list[QueueWork], *, rules: WatchRules | None = None, cron_mode: bool = False
) -> list[set[str]]:
    """The new rules' breaches at each tick, one a minute."""
    streaks, before, fired = Streaks(), None, []
    for i, now in enumerate(sequence):
        found = streaks.breaches(rules or WatchRules(), now, before, i * MIN, cron_mode=cron_mode)
        fired.append({b.rule for b in found})
        before = now
    return fired


def test_no_workers_with_waiting_jobs_for_n_minutes_outside_cron_mode() -> None:
    rules = WatchRules(no_workers_ms=3 * MIN, no_completions_ms=0)
    alone = [work(ready=5, workers=0, completed=i) for i in range(5)]
    assert rules_fired(alone, rules=rules) == [set(), set(), set(), {"no-workers"}, {"no-workers"}]
    assert rules_fired(alone, rules=rules, cron_mode=True) == [set()] * 5
    back = [*alone[:4], work(ready=5, workers=1, completed=9)]
    assert rules_fired(back, rules=rules)[-1] == set()  # a worker came back: resolved
    unknown = [work(ready=5, workers=None, completed=i) for i in range(5)]
    assert rules_fired(unknown, rules=rules) == [set()] * 5  # CLIENT LIST refused: quiet
    empty = [work(ready=0, workers=0)] * 5
    assert rules_fired(empty, rules=rules) == [set()] * 5


def test_no_completions_while_waiting_is_stuck_not_busy() -> None:
    rules = WatchRules(no_workers_ms=0, no_completions_ms=2 * MIN, stalled_rising=False)
    stuck = [work(ready=7, completed=3)] * 4
    assert rules_fired(stuck, rules=rules) == [set(), set(), {"no-completions"}, {"no-completions"}]
    busy = [work(ready=7, completed=3 + i) for i in range(4)]
    assert rules_fired(busy, rules=rules) == [set()] * 4
    removed = [work(ready=7, metrics_completed=10 + i) for i in range(4)]
    assert rules_fired(removed, rules=rules) == [set()] * 4  # removeOnComplete, metrics on
    draining = [work(ready=7 - i) for i in range(4)]
    assert rules_fired(draining, rules=rules) == [set()] * 4  # taken, nothing else left a trace
    paused = [work(ready=7, is_paused=True)] * 4
    assert rules_fired(paused, rules=rules) == [set()] * 4


def test_stalled_jobs_rising_fires_holds_and_resolves_when_falling() -> None:
    rules = WatchRules(no_workers_ms=0, no_completions_ms=0)
    counts = [0, 1, 3, 3, 2, 2, 0]
    fired = rules_fired([work(stalled=n) for n in counts], rules=rules)
    assert fired == [set(), {"stalled"}, {"stalled"}, {"stalled"}, set(), set(), set()]


async def test_the_watcher_counts_workers_only_on_a_tick_with_waiting_jobs(
    redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    service = QueueService(redis, prefixes=[prefix], queues=["w"])
    events: list[AlertEvent] = []

    async def emit(event: AlertEvent) -> None:
        events.append(event)

    async def client_lists() -> int:
        stats = await redis.info("commandstats")
        return int(stats.get("cmdstat_client|list", {}).get("calls", 0))

    rules = WatchRules(depth=0, oldest_ms=0, no_workers_ms=MIN, no_completions_ms=0)
    watcher = Watcher(rules, emit, redis, f"{prefix}-state")
    start = await client_lists()
    now = int(time.time() * 1000)
    idle = await service.probe(["w"], now_ms=now)
    await watcher.on_tick(idle)
    assert await client_lists() == start and not events  # idle: the probe's command only
    await node("add", queue="w", jobs=[{"name": "send", "data": {}}])
    await watcher.on_tick(await service.probe(["w"], now_ms=now + 1000))
    assert await client_lists() == start + 1 and not events  # counted; not yet a minute
    await watcher.on_tick(await service.probe(["w"], now_ms=now + MIN + 2000))
    assert [(e.status, e.labels["rule"]) for e in events] == [("firing", "no-workers")]
    assert await client_lists() == start + 2  # a minute later: counted again
    try:
        await watcher.on_tick(await service.probe(["w"], now_ms=now + MIN + 3000))
        assert await client_lists() == start + 2  # within the minute: the last count stands
    finally:
        await redis.delete(f"{prefix}-state:watcher:active")


# --- Redis Cluster: CLIENT LIST on every node ----------------------------------------------


async def test_on_redis_cluster_workers_are_listed_from_every_node(
    cluster_client: Any, cluster_node: NodeCall
) -> None:
    """A Worker's connection is on the node of its queue's slot: CLIENT LIST goes to every
    node (redis-py's target_nodes=ALL_NODES) and the rows say which."""
    service = QueueService(cluster_client, prefixes=["bull"], queues=["{orders}", "{invoices}"])
    for queue in ("{orders}", "{invoices}"):
        await cluster_node(
            "add", prefix="bull", queue=queue, jobs=[{"name": "x", "opts": {"delay": HOUR_MS}}]
        )
    running = [
        asyncio.create_task(cluster_node("workers", prefix="bull", queue=q, seconds=4))
        for q in ("{orders}", "{invoices}")
    ]

    async def connected() -> bool:
        return [len(q.workers or []) for q in await service.workers()] == [1, 1]

    await until(connected)
    rows = [w for q in await service.workers() for w in q.workers or []]
    assert all(w.node for w in rows) and len(rows) == 2
    snaps = await service.snapshot()
    assert [s.workers for s in snaps] == [1, 1]
    for task in running:
        await task


async def test_a_plain_snapshot_derives_the_rate_from_the_ticks_depth_samples(
    redis: aioredis.Redis, prefix: str
) -> None:
    """No Worker records metrics: the depth samples the tick keeps are read inside the same
    snapshot script call, and the rate and time to empty come from them."""
    from bot.queues.samples import sample_key_base

    base = sample_key_base(f"{prefix}-state")
    service = QueueService(redis, prefixes=[prefix], queues=["slow"], sample_key_base=base)
    queue = service.store.bullmq(service.ref("slow"))
    await queue.addBulk([{"name": "job", "data": {"i": i}} for i in range(40)])
    now = int(time.time() * 1000)
    # What three ticks a minute apart left: 100, then 70, then 40 waiting (newest first).
    await redis.lpush(
        f"{base}{prefix}:slow", f"{now - 120_000}:100", f"{now - 60_000}:70", f"{now}:40"
    )
    [snap] = await service.snapshot(["slow"], now_ms=now)
    assert snap.throughput is not None and snap.throughput.source == "samples"
    assert snap.throughput.completed_per_min == 30.0
    assert snap.time_to_empty_ms == 80_000  # 40 waiting at 30 a minute
