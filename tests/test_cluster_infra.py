"""The Redis Cluster test infrastructure itself: the cluster is whole, npm bullmq runs on it
with hash-tagged queues, and the resharding helpers move a slot (whole, or half) without
losing a key. Product tests on a cluster rely on all of this, so it is proven first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis_cluster_for_tests import SLOTS, RedisClusterForTests

NodeCall = Callable[..., Awaitable[Any]]

# The two ways to keep a BullMQ queue in one slot: a hash-tagged prefix, or queue name.
TAGGED_PREFIX, PLAIN_QUEUE = "{bull}", "emails"
PLAIN_PREFIX, TAGGED_QUEUE = "bull", "{orders}"


def other_master(cluster: RedisClusterForTests, slot: int) -> int:
    owner = cluster.node_for_slot(slot)
    return next(p for p in cluster.ports if p != owner)


def test_three_masters_own_every_slot_between_them(cluster: RedisClusterForTests) -> None:
    assert len(cluster.ports) == 3
    assert cluster.nodes_csv == ",".join(f"127.0.0.1:{p}" for p in cluster.ports)
    assert cluster.url == cluster.urls[0] == f"redis://127.0.0.1:{cluster.ports[0]}"
    owners = {cluster.node_for_slot(s) for s in range(0, SLOTS, 97)}
    assert owners == set(cluster.ports)  # each master holds a share
    cluster.wait_until_agreed(timeout_s=0)  # cluster_state:ok, 16384 slots, one map
    # Hash tags: a whole queue under `{bull}` or named `{orders}` shares one slot.
    assert cluster.keyslot("{bull}:emails:wait") == cluster.keyslot("{bull}:x:meta")
    assert cluster.keyslot("bull:{orders}:wait") == cluster.keyslot("bull:{orders}-children:1")


async def test_npm_bullmq_populates_and_counts_hash_tagged_queues(
    cluster: RedisClusterForTests, cluster_node: NodeCall
) -> None:
    for prefix, queue in ((TAGGED_PREFIX, PLAIN_QUEUE), (PLAIN_PREFIX, TAGGED_QUEUE)):
        made = await cluster_node("populate", prefix=prefix, queue=queue)
        counts = (await cluster_node("counts", prefix=prefix, queues=[queue]))[queue]
        assert {state: len(ids) for state, ids in made["ids"].items()} == {
            state: n for state, n in counts.items() if n
        }
        assert all(counts[s] > 0 for s in ("waiting", "active", "failed", "completed", "delayed"))
    # Really on the cluster: each queue's keys sit in its one slot, on its owner.
    for key in ("{bull}:emails:meta", "bull:{orders}:meta"):
        slot = cluster.keyslot(key)
        assert key.encode() in cluster.keys_in_slot(slot)


async def test_a_node_worker_processes_a_job_on_the_cluster(cluster_node: NodeCall) -> None:
    job = {"name": "ship", "data": {"order": 7}}
    [job_id] = (await cluster_node("add", prefix=TAGGED_PREFIX, queue="ship", jobs=[job]))["ids"]
    done = await cluster_node("process", prefix=TAGGED_PREFIX, queue="ship", count=1)
    assert [(j["id"], j["data"]) for j in done["processed"]] == [(job_id, {"order": 7})]
    found = await cluster_node("job", prefix=TAGGED_PREFIX, queue="ship", id=job_id)
    assert found["state"] == "completed"


async def test_move_slot_keeps_every_key_and_clients_follow_it(
    cluster: RedisClusterForTests, cluster_node: NodeCall, cluster_client: RedisCluster
) -> None:
    made = await cluster_node("populate", prefix=TAGGED_PREFIX, queue=PLAIN_QUEUE)
    slot = cluster.keyslot(TAGGED_PREFIX)
    before = sorted(cluster.keys_in_slot(slot))
    job_key = f"{TAGGED_PREFIX}:{PLAIN_QUEUE}:{made['ids']['failed'][0]}"
    reason = await cluster_client.hget(job_key, "failedReason")  # caches the old owner
    target = other_master(cluster, slot)

    cluster.move_slot(slot, target)

    assert cluster.node_for_slot(slot) == target
    assert sorted(cluster.keys_in_slot(slot)) == before
    assert len(before) > 10
    assert await cluster_client.hget(job_key, "failedReason") == reason  # followed MOVED
    [active] = made["ids"]["active"]
    assert await cluster_client.pttl(f"{TAGGED_PREFIX}:{PLAIN_QUEUE}:{active}:lock") > 0
    counts = await cluster_node("counts", prefix=TAGGED_PREFIX, queues=[PLAIN_QUEUE])
    assert counts[PLAIN_QUEUE]["failed"] == 2


async def test_a_half_migrated_slot_serves_keys_from_both_sides(
    cluster: RedisClusterForTests, cluster_client: RedisCluster
) -> None:
    keys = [f"{{half}}:k{i}" for i in range(20)]
    for i, key in enumerate(keys):
        await cluster_client.set(key, str(i))
    slot = cluster.keyslot(keys[0])
    source, target = cluster.node_for_slot(slot), other_master(cluster, slot)

    cluster.begin_migration(slot, target)
    assert cluster.migrate_some(slot, 8) == 8
    assert len(cluster.keys_in_slot(slot, port=source)) == 12
    assert len(cluster.keys_in_slot(slot, port=target)) == 8
    # Moved keys come back through ASK, the rest from the source, which still owns it.
    assert [await cluster_client.get(k) for k in keys] == [str(i) for i in range(20)]
    assert cluster.node_for_slot(slot) == source

    cluster.finish_migration(slot)
    assert cluster.node_for_slot(slot) == target
    assert len(cluster.keys_in_slot(slot, port=target)) == 20
    assert cluster.keys_in_slot(slot, port=source) == []
    assert [await cluster_client.get(k) for k in keys] == [str(i) for i in range(20)]
