"""/metrics (issue 10, item 13): the queue gauges come from the tick's probe and cost Redis
no command; drain ticks and alert intake are counted; docs/metrics.md and the Grafana
dashboard name exactly what the app exports."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from conftest import REDIS_URL
from drain_helpers import TOKEN, Endpoint, add_jobs
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from slack_helpers import MakeBot

import bot.http_app  # noqa: F401  (every module that registers a metric)
from bot import metrics
from bot.http_app import TICKER
from bot.queues.keys import COUNT_STATES
from bot.queues.models import ProbeResult, QueueWork
from bot.queues.service import QueueService
from bot.redis_client import commands_sent

ROOT = Path(__file__).resolve().parent.parent
HOUR_MS = 3_600_000


async def scrape(bot: TestClient[Any, Any]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """GET /metrics through the app: sample (name, labels) -> value."""
    response = await bot.get("/metrics")
    assert response.status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(await response.text())
        for s in family.samples
    }


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def move(redis: aioredis.Redis, service: QueueService, queue: str, job: str, to: str) -> None:
    """Put a waiting job where a worker would have left it (a sorted set, or `active`)."""
    keys = service.ref(queue)
    await redis.lrem(keys.key("wait"), 1, job)
    if to == "active":
        await redis.lpush(keys.key("active"), job)
    else:
        await redis.zadd(keys.key(to), {job: int(time.time() * 1000)})
        if to == "failed":
            await redis.hset(keys.job(job), "failedReason", "boom")


async def test_queue_gauges_are_the_snapshot_counts_and_cost_no_command(
    make_bot: MakeBot, service: QueueService, redis: aioredis.Redis
) -> None:
    q, r = service.store.bullmq(service.ref("mq")), service.store.bullmq(service.ref("mr"))
    ids = [str((await q.add("job", {"i": i})).id) for i in range(8)]
    await redis.hset(service.ref("mq").job(ids[0]), "timestamp", int(time.time() * 1000) - 600_000)
    await q.add("later", {}, {"delay": HOUR_MS})
    await q.add("urgent", {}, {"priority": 2})
    await redis.zadd(service.ref("mq").key("waiting-children"), {"parent-1": 1})
    await move(redis, service, "mq", ids[1], "active")
    for job in ids[2:4]:
        await move(redis, service, "mq", job, "failed")
    await move(redis, service, "mq", ids[4], "completed")
    await service.quarantine("mq", ids[3], reason="poison", actor="test")  # one failed -> DLQ
    await r.add("held", {})
    await r.add("held", {})
    await service.pause("mr")

    bot = await make_bot(queues="mq,mr", drain_every_ms=3_600_000)
    ticker = bot.app[TICKER]
    await ticker.tick()  # the first: loads the script, the watcher reads its state once
    costs = []
    for _ in range(3):  # the least of three: a stray task of an earlier test may count too
        before = commands_sent()
        await ticker.tick()
        costs.append(commands_sent() - before)
    assert min(costs) == 1  # the probe's EVALSHA; exporting added nothing
    before = commands_sent()
    generate_latest()
    assert commands_sent() == before

    seen = await scrape(bot)
    snaps = await service.snapshot(["mq", "mr"])
    for snap in snaps:
        by_state = {
            state: seen[
                ("queueops_queue_jobs", frozenset({("queue", snap.name), ("state", state)}))
            ]
            for state in COUNT_STATES
        }
        assert by_state == {state: float(n) for state, n in snap.counts.items()}
        one = frozenset({("queue", snap.name)})
        assert seen[("queueops_queue_dlq_jobs", one)] == snap.dlq_depth
        assert seen[("queueops_queue_paused", one)] == (1.0 if snap.is_paused else 0.0)
        assert snap.oldest_waiting_age_ms is not None
        waited = seen[("queueops_queue_oldest_waiting_seconds", one)]
        assert abs(waited - snap.oldest_waiting_age_ms / 1000) < 5
    mq = snaps[0]
    assert mq.dlq_depth == 1 and mq.counts == {
        **dict.fromkeys(COUNT_STATES, 1),
        "waiting": 4,
        "paused": 0,
        "completed": 1,
    }
    assert snaps[1].counts["paused"] == 2 and snaps[1].is_paused
    assert seen[("queueops_queue_oldest_waiting_seconds", frozenset({("queue", "mq")}))] > 590

    # What finishes between two ticks is counted, from the same probe.
    failed = value("queueops_queue_finished_jobs_total", queue="mq", outcome="failed")
    await move(redis, service, "mq", ids[5], "failed")
    await move(redis, service, "mq", ids[6], "completed")
    before = commands_sent()
    await ticker.tick()
    assert commands_sent() - before == 1
    assert value("queueops_queue_finished_jobs_total", queue="mq", outcome="failed") == failed + 1
    assert value("queueops_queue_jobs", queue="mq", state="waiting") == 2


def work(name: str) -> QueueWork:
    counts = dict.fromkeys(COUNT_STATES, 1)
    return QueueWork(name=name, is_paused=False, ready=1, due_delayed=0, stalled=0, counts=counts)


def test_a_queue_that_disappears_loses_its_series() -> None:
    gauges = metrics.QueueGauges()
    gauges.export(ProbeResult(queues=[work("gone-a"), work("gone-b")], at_ms=1))
    assert value("queueops_queue_jobs", queue="gone-b", state="waiting") == 1
    gauges.export(ProbeResult(queues=[work("gone-a")], at_ms=2))
    text = generate_latest().decode()
    assert 'queue="gone-a"' in text and 'queue="gone-b"' not in text


async def test_drain_ticks_are_counted_by_outcome(
    make_bot: MakeBot, endpoint: Endpoint, prefix: str, redis: aioredis.Redis
) -> None:
    def ticks(outcome: str) -> float:
        return value("queueops_drain_ticks_total", outcome=outcome)

    start = {o: ticks(o) for o in ("idle", "drained", "failed", "not-leader", "off")}
    calls = value("queueops_drain_call_seconds_count")
    ok_a = value("queueops_drains_total", queue="a", outcome="ok")
    failed_b = value("queueops_drains_total", queue="b", outcome="failed")
    settings: dict[str, Any] = {
        "queues": "a,b",
        "drain_url": endpoint.url,
        "drain_every_ms": 3_600_000,
        "drain_instant": False,  # ticks by hand only: no start-up tick, no wake-up drains
    }
    one = await make_bot(cron_secret=TOKEN, **settings)
    two = await make_bot(cron_secret=TOKEN, **settings)
    await one.app[TICKER].tick()  # leads
    await two.app[TICKER].tick()
    await add_jobs(REDIS_URL, prefix, "a", ["x", "y"])
    await one.app[TICKER].tick()
    assert (ticks("idle"), ticks("not-leader"), ticks("drained")) == (
        start["idle"] + 1,
        start["not-leader"] + 1,
        start["drained"] + 1,
    )
    assert value("queueops_drains_total", queue="a", outcome="ok") == ok_a + 1
    assert value("queueops_drain_call_seconds_count") == calls + 1

    await redis.hset(f"{prefix}-state:cron", "paused", "1")
    await one.app[TICKER].tick()
    assert ticks("off") == start["off"] + 1
    await redis.hset(f"{prefix}-state:cron", "paused", "0")

    wrong = await make_bot(cron_secret="not-the-token", **settings)
    await redis.delete(
        f"{prefix}-state:cron:lease"
    )  # hand the lease to the replica with the wrong token
    await add_jobs(REDIS_URL, prefix, "b", ["z"])
    await wrong.app[TICKER].tick()
    assert ticks("failed") == start["failed"] + 1
    assert value("queueops_drains_total", queue="b", outcome="failed") == failed_b + 1
    scraped = await scrape(wrong)
    assert scraped[("queueops_drain_ticks_total", frozenset({("outcome", "failed")}))] == ticks(
        "failed"
    )


async def test_alert_intake_counts_accepted_and_refused(make_bot: MakeBot) -> None:
    bot = await make_bot(alert_webhook_token="tok")
    accepted = value("queueops_alerts_accepted_total", endpoint="generic")
    refused = value("queueops_alerts_refused_total", endpoint="generic", code="400")
    auth = {"Authorization": "Bearer tok"}
    assert (await bot.post("/alerts/generic", json={"title": "Disk"}, headers=auth)).status == 200
    assert (await bot.post("/alerts/generic", json={"queue": "q"}, headers=auth)).status == 400
    seen = await scrape(bot)
    assert (
        seen[("queueops_alerts_accepted_total", frozenset({("endpoint", "generic")}))]
        == accepted + 1
    )
    key = ("queueops_alerts_refused_total", frozenset({("endpoint", "generic"), ("code", "400")}))
    assert seen[key] == refused + 1


def exported() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every queueops metric the registry serves: the name a query uses (a counter's with
    _total) -> its type and labels."""
    labels = {
        m._name: tuple(m._labelnames)  # prometheus_client keeps them private
        for m in vars(metrics).values()
        if isinstance(m, (Counter, Gauge, Histogram))
    }
    found = {}
    for family in REGISTRY.collect():
        if family.name.startswith("queueops_"):
            name = family.name + "_total" if family.type == "counter" else family.name
            found[name] = (family.type, labels[family.name])
    return found


def series_names() -> set[str]:
    """The names a PromQL expression can select (a histogram's _bucket, _sum, _count)."""
    names = set()
    for name, (kind, _) in exported().items():
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return names


def test_docs_list_every_metric_the_app_exports() -> None:
    rows = re.findall(
        r"^\| `(queueops_\w+)` \| (\w+) \|([^|]*)\|", (ROOT / "docs/metrics.md").read_text(), re.M
    )
    documented = {
        name: (kind, tuple(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows
    }
    assert documented == exported()


def test_the_grafana_dashboard_uses_only_exported_metrics() -> None:
    board = json.loads((ROOT / "docs/grafana/queueops.json").read_text())
    assert board["schemaVersion"] >= 36 and board["uid"] and board["title"]
    variables = board["templating"]["list"]
    [source] = [v for v in variables if v["type"] == "datasource"]
    assert source["query"] == "prometheus"
    datasource = {"type": "prometheus", "uid": f"${{{source['name']}}}"}
    exprs = [v["definition"] for v in variables if v["type"] == "query"]
    ids, titles = set(), set()
    for panel in board["panels"]:
        ids.add(panel["id"])
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        if panel["type"] == "row":
            continue
        titles.add(panel["title"])
        assert panel["datasource"] == datasource, panel["title"]
        assert panel["targets"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
        exprs += [t["expr"] for t in panel["targets"]]
    assert len(ids) == len(board["panels"])
    known = exported()
    labels = {
        series: known[name][1]
        for name in known
        for series in (name, f"{name}_bucket", f"{name}_sum", f"{name}_count")
    }
    names = set()
    for expr in exprs:
        used = set(re.findall(r"\bqueueops_\w+", expr))
        assert used, expr
        names |= used
        for name, selector in re.findall(r"\b(queueops_\w+)\{([^}]*)\}", expr):
            matched = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector))
            assert matched <= set(labels.get(name, ())), (name, matched)
    assert names <= series_names(), names - series_names()
    assert {
        "queueops_queue_jobs",
        "queueops_queue_oldest_waiting_seconds",
        "queueops_queue_dlq_jobs",
        "queueops_queue_paused",
        "queueops_queue_finished_jobs_total",
        "queueops_drain_ticks_total",
        "queueops_drain_call_seconds_bucket",
        "queueops_alerts_accepted_total",
        "queueops_alerts_refused_total",
    } <= names
    assert {
        "Jobs by queue and state",
        "Oldest waiting job",
        "DLQ depth",
        "Failed ratio",
        "Paused",
        "Drain ticks by outcome",
        "Drain call duration p50 / p99",
        "Alerts accepted / refused",
    } <= titles


def test_a_queue_shown_by_its_full_name_keeps_its_series_from_tick_to_tick() -> None:
    """Two prefixes hold `email`: replies and metrics show both by their full names, and
    each tick's export must not take them for queues that are gone."""
    gauges = metrics.QueueGauges()

    def work(prefix: str, failed: int) -> QueueWork:
        return QueueWork(
            name="email",
            prefix=prefix,
            label=f"{prefix}:email",
            is_paused=False,
            ready=1,
            due_delayed=0,
            stalled=0,
            failed=failed,
            counts={s: 0 for s in COUNT_STATES},
        )

    gauges.export(ProbeResult(queues=[work("qo-a", 1), work("qo-b", 1)], at_ms=1))
    gauges.export(ProbeResult(queues=[work("qo-a", 3), work("qo-b", 1)], at_ms=2))
    assert (
        REGISTRY.get_sample_value(
            "queueops_queue_finished_jobs_total", {"queue": "qo-a:email", "outcome": "failed"}
        )
        == 2
    )
