"""Queues on Redis Cluster: which slot each queue's keys hash to, and the refusal of a queue
whose keys would spread over slots.

BullMQ's scripts (npm's and ours) touch many keys of one queue in one call (`wait`,
`active`, `meta`, the job hashes, the `-dlq` queue beside it), and a cluster node answers a
call whose keys span slots with CROSSSLOT. So on a cluster every key of a queue must carry
the same hash tag: a tagged prefix (`{bull}:orders:wait`: all queues of that prefix share
one slot) or a tagged queue name (`bull:{orders}:wait`, and `bull:{orders}-dlq:wait`: one
slot per queue). Commands that read many queues at once (snapshot, probe) then send one
call per slot that holds queues: `group_by_slot` says which.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.crc import key_slot

from bot.errors import Refused
from bot.queues.keys import QueueRef


def slot_of(key: str) -> int:
    """The cluster slot of `key` (CRC16 of its hash tag, or of the whole key)."""
    return int(key_slot(key.encode()))


QUEUES_PER_CALL = 40
"""The most queues one snapshot or probe call reads. One call for every queue was 1 command
however many, but at 1,000 queues it kept Redis busy for 104 ms (bench/cluster_and_discovery.py),
and Redis is shared with the workers being rescued (10 ms at most a call): 40 queues take
about 2.5 ms. Up to 40 queues it is still one command."""


def _chunks(indexes: list[int], per_call: int) -> list[list[int]]:
    return [indexes[i : i + per_call] for i in range(0, len(indexes), per_call)]


def group_by_slot(
    queues: Sequence[QueueRef], *, per_call: int = QUEUES_PER_CALL
) -> list[list[int]]:
    """The indexes of `queues`, grouped by the slot of their keys, groups and indexes in
    first-seen order, a group at most `per_call` queues. Pure: no Redis call."""
    groups: dict[int, list[int]] = {}
    for i, queue in enumerate(queues):
        groups.setdefault(slot_of(queue.base), []).append(i)
    return [chunk for group in groups.values() for chunk in _chunks(group, per_call)]


def group_for_calls(
    queues: Sequence[QueueRef], *, cluster: bool, per_call: int = QUEUES_PER_CALL
) -> list[list[int]]:
    """The calls a multi-queue read makes: by slot on a cluster, in order on one server;
    each at most `per_call` queues."""
    if cluster:
        return group_by_slot(queues, per_call=per_call)
    return _chunks(list(range(len(queues))), per_call)


def require_one_slot(queue: QueueRef) -> QueueRef:
    """`queue` when its keys share a hash tag; else Refused with the one line saying how
    to fix it (see the module docstring)."""
    if queue.slot_tag is None:
        raise Refused(
            f"queue '{queue.shown}' ({queue.full}) has no hash tag: on Redis Cluster all keys "
            "of a BullMQ queue must hash to one slot; use a hash-tag prefix "
            f"(QUEUEOPS_PREFIX={{{queue.prefix}}}) or a hash-tagged queue name "
            f"({{{queue.name}}}), as your producers and workers must"
        )
    return queue


def is_cluster_client(redis: object) -> bool:
    """Whether `redis` is redis-py's cluster client (typed as `Redis` where it is made)."""
    from redis.asyncio.cluster import RedisCluster

    return isinstance(redis, RedisCluster)


async def per_slot(
    queues: Sequence[QueueRef],
    call: Callable[[list[QueueRef]], Awaitable[list[Any]]],
    *,
    cluster: bool = True,
) -> list[Any]:
    """`call` once per group of `queues` (`group_for_calls`, concurrently), each answering
    one row per queue it was given; the rows put back in the order of `queues`."""
    groups = group_for_calls(queues, cluster=cluster)
    answers = await asyncio.gather(*(call([queues[i] for i in group]) for group in groups))
    rows: list[Any] = [None] * len(queues)
    for group, answer in zip(groups, answers, strict=True):
        for i, row in zip(group, answer, strict=True):
            rows[i] = row
    return rows
