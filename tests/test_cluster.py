"""queueops on a real 3-master Redis Cluster, checked by npm bullmq on ioredis' Cluster.

Both ways of keeping a BullMQ queue in one slot are covered: a hash-tagged prefix (`{bull}`:
all its queues share a slot, so a snapshot stays one command) and hash-tagged queue names
(`bull:{orders}`: a command per slot). A queue without a hash tag is refused with the line
that says how to fix it. Bulk moves are killed mid-way, and run while their slot is
resharded to another master: every job stays in exactly one of the queue and its DLQ.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from drain_helpers import TOKEN, start_endpoint, stop_endpoint
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis_cluster_for_tests import RedisClusterForTests
from slack_helpers import MakeBot
from test_instant_drain import until

from bot.errors import QueueOpsError, Refused
from bot.http_app import INSTANT, TICKER
from bot.patterns import compile_user_pattern
from bot.queues.bullmq.probe import Extra, TickOptions
from bot.queues.bullmq.quarantine import BulkMoveStopped
from bot.queues.bullmq.slots import group_by_slot
from bot.queues.keys import COUNT_STATES
from bot.queues.samples import sample_key_base
from bot.queues.service import QueueService

HERE = Path(__file__).resolve().parent
NodeCall = Callable[..., Awaitable[Any]]
EVERYTHING = compile_user_pattern(".")


def service_on(cluster_client: RedisCluster, prefix: str, *queues: str) -> QueueService:
    return QueueService(cast(Redis, cluster_client), prefixes=[prefix], queues=list(queues))


class EvalCount:
    """The EVALSHAs (and the SCRIPT LOADs) the cluster client sends, by wrapping it."""

    def __init__(self, cluster_client: RedisCluster) -> None:
        self.evalsha = 0
        original = cluster_client.execute_command

        async def counting(*args: Any, **kwargs: Any) -> Any:
            if str(args[0]).upper() == "EVALSHA":
                self.evalsha += 1
            return await original(*args, **kwargs)

        cluster_client.execute_command = counting  # type: ignore[method-assign]


async def test_snapshot_equals_npm_counts_in_one_command_per_slot(
    cluster_client: RedisCluster, cluster_node: NodeCall, cluster: RedisClusterForTests
) -> None:
    await cluster_node("populate", prefix="{bull}", queue="emails")
    await cluster_node("populate", prefix="{bull}", queue="sms")
    await cluster_node("populate", prefix="bull", queue="{orders}")
    await cluster_node("populate", prefix="bull", queue="{invoices}")
    tagged = service_on(cluster_client, "{bull}", "emails", "sms")
    named = service_on(cluster_client, "bull", "{orders}", "{invoices}")
    await tagged.snapshot()
    await named.snapshot()  # scripts loaded: what follows is steady state
    await named.probe()
    count = EvalCount(cluster_client)

    snaps = await tagged.snapshot()
    assert count.evalsha == 1  # a {bull} prefix: one slot, one command
    npm = await cluster_node("counts", prefix="{bull}", queues=["emails", "sms"])
    for snap in snaps:
        assert snap.counts == {s: npm[snap.name][s] for s in COUNT_STATES}, snap.name

    count.evalsha = 0
    queues = await named.queues()
    assert len(group_by_slot(queues)) == 2
    assert cluster.keyslot("bull:{orders}:wait") != cluster.keyslot("bull:{invoices}:wait")
    snaps = await named.snapshot()
    assert count.evalsha == 2  # one per slot holding queues
    assert [s.name for s in snaps] == ["{orders}", "{invoices}"]  # the input order
    npm = await cluster_node("counts", prefix="bull", queues=["{orders}", "{invoices}"])
    for snap in snaps:
        assert snap.counts == {s: npm[snap.name][s] for s in COUNT_STATES}, snap.name
        assert snap.counts["failed"] == 2 and snap.dlq_depth == 0

    count.evalsha = 0
    work = await named.probe()
    assert count.evalsha == 2
    assert [w.counts for w in work.queues] == [s.counts for s in snaps]


@pytest.mark.parametrize(("prefix", "queue"), [("{bull}", "jobs"), ("bull", "{jobs}")])
async def test_quarantine_and_replay_round_trip_checked_by_npm_then_a_worker_runs_it(
    cluster_client: RedisCluster, cluster_node: NodeCall, prefix: str, queue: str
) -> None:
    ids = (await cluster_node("fail", prefix=prefix, queue=queue, count=3, reason="poison"))["ids"]
    service = service_on(cluster_client, prefix, queue)
    moved = await service.quarantine(queue, ids[0], reason="bad", actor="t")
    assert moved.job_id == ids[0]
    found = await cluster_node("job", prefix=prefix, queue=f"{queue}-dlq", id=ids[0])
    assert found["state"] == "failed" and found["data"]["n"] == 0
    assert await cluster_node("job", prefix=prefix, queue=queue, id=ids[0]) is None

    replayed = await service.dlq_replay(queue, count=1)
    assert [r.job_id for r in replayed.replayed] == [ids[0]]
    back = await cluster_node("job", prefix=prefix, queue=queue, id=ids[0])
    assert back["state"] == "waiting" and back["data"]["n"] == 0
    assert await cluster_node("job", prefix=prefix, queue=f"{queue}-dlq", id=ids[0]) is None

    processed = await cluster_node("process", prefix=prefix, queue=queue, count=1, timeoutMs=10000)
    assert [p["id"] for p in processed["processed"]] == [ids[0]]
    counts = (await cluster_node("counts", prefix=prefix, queues=[queue]))[queue]
    assert counts["completed"] == 1 and counts["failed"] == 2


async def test_bulk_quarantine_of_300_failed_jobs(
    cluster_client: RedisCluster, cluster_node: NodeCall
) -> None:
    await cluster_node("fail", prefix="bull", queue="{big}", count=300, reason="poison")
    service = service_on(cluster_client, "bull", "{big}")
    done = await service.quarantine_matching(
        "{big}", compile_user_pattern("pois[o]n"), limit=1000, reason="r", actor="t"
    )
    assert len(done.moved) == 300 and not done.skipped
    counts = await cluster_node("counts", prefix="bull", queues=["{big}", "{big}-dlq"])
    assert (counts["{big}"]["failed"], counts["{big}-dlq"]["failed"]) == (0, 300)


async def test_a_queue_without_a_hash_tag_is_refused_with_how_to_fix_it(
    cluster_client: RedisCluster,
) -> None:
    service = service_on(cluster_client, "bull", "orders")
    expected = (
        "queue 'orders' (bull:orders) has no hash tag: on Redis Cluster all keys of a BullMQ "
        "queue must hash to one slot; use a hash-tag prefix (QUEUEOPS_PREFIX={bull}) or a "
        "hash-tagged queue name ({orders}), as your producers and workers must"
    )
    for attempt in (
        service.snapshot(),
        service.snapshot(["orders"]),
        service.probe(),
        service.quarantine("orders", "1", reason="r", actor="t"),
        service.dlq_replay("orders", count=1),
    ):
        with pytest.raises(Refused) as err:
            await attempt
        assert str(err.value) == expected and "\n" not in str(err.value)


async def test_tick_probe_with_state_extras_is_one_command_when_they_share_the_slot(
    cluster_client: RedisCluster, cluster_node: NodeCall
) -> None:
    await cluster_node("add", prefix="{bull}", queue="emails", jobs=[{"name": "a"}, {"name": "b"}])
    service = service_on(cluster_client, "{bull}", "emails", "sms")
    state = "{bull}:queueops"  # queueops' state under the queues' own tag
    await cluster_client.zadd(f"{state}:alerts", {"x": 1})
    extras = [Extra("zdue", f"{state}:alerts", ("now",))]
    opts = TickOptions(keep_samples=5, sample_key_base=sample_key_base(state), extras=extras)
    await service.probe(options=opts)
    count = EvalCount(cluster_client)
    result = await service.probe(options=opts)
    assert count.evalsha == 1
    assert result.extras == [1]
    assert [(w.name, w.ready) for w in result.queues] == [("emails", 2), ("sms", 0)]

    # State in another slot: the extras go in a call of their own, to that slot's node.
    other = "{queueops}"
    await cluster_client.zadd(f"{other}:alerts", {"x": 1, "y": 2})
    extras = [Extra("zdue", f"{other}:alerts", ("now",))]
    opts = TickOptions(keep_samples=5, sample_key_base=sample_key_base(other), extras=extras)
    count.evalsha = 0
    result = await service.probe(options=opts)
    assert count.evalsha == 2 and result.extras == [2]
    samples = await cluster_client.lrange(f"{sample_key_base(other)}{{bull}}:emails", 0, -1)
    assert len(samples) == 1 and samples[0].endswith(":2")  # written in the queue's slot


async def _start_crash(cluster: RedisClusterForTests, prefix: str, queue: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "crash_quarantine.py"),
        cluster.url,
        prefix,
        queue,
        "10",
        "quarantine",
        "cluster",
        stdout=asyncio.subprocess.PIPE,
        cwd=HERE.parent,
    )
    assert proc.stdout is not None
    try:
        assert (await asyncio.wait_for(proc.stdout.readline(), 20)).strip() == b"started"
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


async def _places(
    cluster_client: RedisCluster, prefix: str, queue: str
) -> tuple[set[str], set[str]]:
    source = set(await cluster_client.zrange(f"{prefix}:{queue}:failed", 0, -1))
    dlq = set(await cluster_client.zrange(f"{prefix}:{queue}-dlq:failed", 0, -1))
    return source, dlq


async def test_bulk_quarantine_killed_with_sigkill_loses_nothing_on_a_cluster(
    cluster_client: RedisCluster, cluster_node: NodeCall, cluster: RedisClusterForTests
) -> None:
    total = 1000
    prefix, queue = "bull", "{kill}"
    await cluster_node("fail", prefix=prefix, queue=queue, count=total, reason="poison")
    await _start_crash(cluster, prefix, queue)

    counts = await cluster_node("counts", prefix=prefix, queues=[queue, f"{queue}-dlq"])
    in_source, in_dlq = counts[queue]["failed"], counts[f"{queue}-dlq"]["failed"]
    assert in_source + in_dlq == total
    assert 0 < in_dlq < total, "the kill should land mid-way"
    source, dlq = await _places(cluster_client, prefix, queue)
    assert not source & dlq and len(source | dlq) == total
    hashes = [
        await cluster_client.exists(f"{prefix}:{queue}:{i}", f"{prefix}:{queue}-dlq:{i}")
        for i in source | dlq
    ]
    assert hashes == [1] * total  # each job's hash exactly once

    service = service_on(cluster_client, prefix, queue)
    await service.quarantine_matching(queue, EVERYTHING, limit=total, reason="r", actor="t")
    counts = await cluster_node("counts", prefix=prefix, queues=[queue, f"{queue}-dlq"])
    assert (counts[queue]["failed"], counts[f"{queue}-dlq"]["failed"]) == (0, total)


async def test_bulk_quarantine_during_a_resharding_of_its_slot_loses_nothing(
    cluster_client: RedisCluster, cluster_node: NodeCall, cluster: RedisClusterForTests
) -> None:
    total = 2000
    prefix, queue = "{bull}", "reshard"
    await cluster_node("fail", prefix=prefix, queue=queue, count=total, reason="poison")
    slot = cluster.keyslot("{bull}")
    target = next(p for p in cluster.ports if p != cluster.node_for_slot(slot))
    service = service_on(cluster_client, prefix, queue)

    migrated = threading.Event()
    failure: list[BaseException] = []

    def reshard() -> None:
        try:
            cluster.begin_migration(slot, target)
            while cluster.migrate_some(slot, 150):
                time.sleep(0.01)
            cluster.finish_migration(slot)
        except BaseException as err:  # reported by the test below
            failure.append(err)
        finally:
            migrated.set()

    mover = threading.Thread(target=reshard, daemon=True)
    mover.start()
    first: Any
    try:
        first = await service.quarantine_matching(
            queue, EVERYTHING, limit=total, reason="r", actor="t", batch_size=20
        )
    except (BulkMoveStopped, QueueOpsError) as err:  # one clear error is acceptable
        first = err
        assert "\n" not in str(err).strip() or isinstance(err, BulkMoveStopped)
    await asyncio.to_thread(migrated.wait, 30)
    assert not failure, failure
    assert cluster.node_for_slot(slot) == target

    again = await service.quarantine_matching(queue, EVERYTHING, limit=total, reason="r", actor="t")
    counts = await cluster_node("counts", prefix=prefix, queues=[queue, f"{queue}-dlq"])
    source, dlq = await _places(cluster_client, prefix, queue)
    assert not source & dlq, "an id in both"
    if isinstance(first, BulkMoveStopped):
        print("during the resharding:", first)
    else:
        outcomes = Counter(j.outcome for j in first.skipped)
        print("during the resharding: moved", len(first.moved), "skipped", dict(outcomes))
    assert counts[queue]["failed"] == 0, (first, again)
    assert counts[f"{queue}-dlq"]["failed"] == total == len(dlq)


async def test_instant_drains_on_the_cluster_watch_each_slot_and_drain_a_new_job(
    cluster: RedisClusterForTests, cluster_node: NodeCall, make_bot: MakeBot
) -> None:
    """The whole serve app on the cluster, queues in two slots: one blocking watch per
    slot, and a job npm adds to either is drained by the app's endpoint (npm Workers on
    ioredis' Cluster) within seconds, against a 5-minute cadence."""
    queues = ["{wa}", "{wb}"]
    endpoint = await start_endpoint(
        "bull", cluster.url, QUEUES=",".join(queues), REDIS_CLUSTER_NODES=cluster.nodes_csv
    )
    try:
        bot = await make_bot(
            redis_url=cluster.url,
            prefix="bull",
            state_prefix="qo-cluster-state",
            queues=",".join(queues),
            drain_url=endpoint.url,
            cron_secret=TOKEN,
            drain_every_ms=300_000,
            drain_wake_debounce_ms=200,
        )
        await bot.app[TICKER].tick()  # it leads: the watches start
        watch = bot.app[INSTANT]
        assert watch.running

        async def watching_both() -> bool:
            return watch.groups == 2

        await until(watching_both, within=5)
        for queue in queues:
            await cluster_node("add", prefix="bull", queue=queue, jobs=[{"name": "now"}])

            async def done(queue: str = queue) -> bool:
                counts = (await cluster_node("counts", prefix="bull", queues=[queue]))[queue]
                return bool(counts["completed"] == 1)

            await until(done, within=10)
        assert watch.drains >= 2
    finally:
        await stop_endpoint(endpoint)


async def test_pause_resume_and_retry_on_the_cluster_as_npm_sees_them(
    cluster_client: RedisCluster, cluster_node: NodeCall
) -> None:
    """PyPI bullmq's retry and our pause/resume scripts, on a cluster client."""
    await cluster_node("fail", prefix="bull", queue="{rt}", count=3, reason="flaky")
    service = service_on(cluster_client, "bull", "{rt}")
    assert await service.pause("{rt}") is False  # was not paused
    assert (await cluster_node("is-paused", prefix="bull", queue="{rt}"))["paused"] is True
    assert await service.resume("{rt}") is True
    assert (await cluster_node("is-paused", prefix="bull", queue="{rt}"))["paused"] is False
    assert await service.retry("{rt}", count=None) == 3
    counts = (await cluster_node("counts", prefix="bull", queues=["{rt}"]))["{rt}"]
    assert counts["failed"] == 0 and counts["waiting"] == 3
