"""Which npm bullmq Workers are connected, per queue: one `CLIENT LIST` for every queue.

npm bullmq (5.x, classes/queue-base.js `clientName()`, classes/worker.js) names each
Worker's blocking connection `<prefix>:<base64(queue name)>`, or
`<prefix>:<base64(queue name)>:w:<worker name>` when the Worker has a `name` option; its
`getWorkers()` matches exactly those two forms (queue-getters.js). QueueEvents connections
end in `:qe` and a Queue's own connection is unnamed, so neither counts as a worker. PyPI
bullmq's `get_workers` matches the same names but does not decode them, and asks Redis once
per queue; here one CLIENT LIST answers for every queue, matched by (prefix, queue name).

Managed Redis that refuse CLIENT LIST (an ERR or NOPERM reply: GCP Memorystore, ACL users
without +client) make the answer unknown (None), never a failure: a snapshot still shows
everything else. On Redis Cluster a client is connected to one node, so CLIENT LIST goes to
every node (redis-py's `target_nodes=ALL_NODES`): one command per node, not one. There a
Worker's ioredis Cluster client opens a connection, with the same name, to each node it
talked to, so one Worker shows on several nodes: as npm bullmq's getWorkers does, a queue's
Workers are the matches of the node that has the most of them (its slot's node, where the
Worker blocks on its marker).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bot.queues.bullmq.slots import is_cluster_client
from bot.queues.keys import QueueRef
from bot.queues.models import WorkerConnection

NAMED_WORKER = ":w:"
"""What npm bullmq puts between the queue's client name and a Worker's `name` option."""


def client_name(queue: QueueRef) -> str:
    """The name npm bullmq gives a Worker's connection for `queue` (queue-base.js)."""
    encoded = base64.b64encode(queue.name.encode()).decode()
    return f"{queue.prefix}:{encoded}"


async def client_list(redis: Redis) -> list[dict[str, Any]] | None:
    """Every client connection as redis-py parses CLIENT LIST (one dict per connection, a
    cluster node's under "node"), or None when Redis refuses the command."""
    try:
        if is_cluster_client(redis):
            cluster = cast(Any, redis)
            raw = await cluster.client_list(target_nodes=cluster.ALL_NODES)
            per_node = raw if isinstance(raw, dict) else {"": raw}
            return [{**c, "node": node} for node, rows in per_node.items() for c in rows]
        return list(await redis.client_list())
    except ResponseError:  # ERR unknown command / disabled, NOPERM (NoPermissionError)
        return None


def _seconds(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def match_workers(
    clients: Sequence[dict[str, Any]], queues: Sequence[QueueRef]
) -> dict[QueueRef, list[WorkerConnection]]:
    """The Worker connections of each queue in `queues` (every queue gets a list, maybe
    empty), matched as npm bullmq's getWorkers does: the name exactly, or followed by
    `:w:<worker name>`. The base64 alphabet has no ':', so the name's head is found by
    trying each `:w:` in it."""
    by_name = {client_name(q): q for q in queues}
    found: dict[QueueRef, list[WorkerConnection]] = {q: [] for q in queues}
    for client in clients:
        name = str(client.get("name") or "")
        if not name:
            continue
        queue = by_name.get(name)
        worker_name: str | None = None
        if queue is None:
            at = name.find(NAMED_WORKER)
            while at >= 0 and queue is None:
                queue = by_name.get(name[:at])
                worker_name = name[at + len(NAMED_WORKER) :] if queue is not None else None
                at = name.find(NAMED_WORKER, at + 1)
        if queue is None:
            continue
        found[queue].append(
            WorkerConnection(
                address=str(client.get("addr", "")),
                age_s=_seconds(client.get("age")),
                idle_s=_seconds(client.get("idle")),
                worker_name=worker_name,
                last_command=str(client.get("cmd", "")),
                node=str(client["node"]) if client.get("node") else None,
            )
        )
    for queue, rows in found.items():
        if any(w.node for w in rows):
            by_node: dict[str | None, list[WorkerConnection]] = {}
            for w in rows:
                by_node.setdefault(w.node, []).append(w)
            rows = max(by_node.values(), key=len)
        found[queue] = sorted(rows, key=lambda w: (-w.age_s, w.address))
    return found


async def workers(
    redis: Redis, queues: Sequence[QueueRef]
) -> dict[QueueRef, list[WorkerConnection]] | None:
    """The Workers connected for each queue, from one CLIENT LIST (one per node on a
    cluster); None when Redis refuses CLIENT LIST."""
    clients = await client_list(redis)
    return None if clients is None else match_workers(clients, queues)
