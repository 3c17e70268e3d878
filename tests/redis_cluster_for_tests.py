"""A real 3-master Redis Cluster on loopback, for the tests that need one.

queueops must work against a real cluster, not a model of one: a cluster answers a key in
the wrong slot with MOVED, a key in a slot being resharded with ASK (or TRYAGAIN for a
multi-key command whose keys are split between two nodes), and rejects commands whose keys
span slots with CROSSSLOT. Only real `redis-server` processes in cluster mode behave like
that, so this module starts them (`--cluster-enabled yes`), joins them with
`redis-cli --cluster create`, and can reshard one slot step by step, so a test can run an
operation while the slot is half migrated.

Every node also listens on its cluster bus port, which Redis fixes at port + 10000 (nodes
gossip and fail over there). A node whose bus port is taken exits at start, so a port is
only picked when both it and port + 10000 are free on 127.0.0.1.

The nodes keep nothing on disk but their nodes-P.conf and a log (in one temporary
directory, removed by `stop()`), run in their own session (a Ctrl-C at pytest must not kill
them before the fixture's teardown), and get SIGTERM from Linux if pytest dies without
stopping them.
"""

from __future__ import annotations

import atexit
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bot.embedded_redis import _die_with_parent, answers_ping, stop_server

HOST = "127.0.0.1"
SLOTS = 16384
BUS_PORT_OFFSET = 10000
"""Redis puts a node's cluster bus on its port + 10000."""

START_TIMEOUT_S = 20.0
"""Upper bound for the nodes to answer PING, and again for the cluster to agree."""

MIGRATE_TIMEOUT_MS = 5000
LOG_TAIL_LINES = 15
_PORT_RANGE = (20000, 50000)
"""Below the usual ephemeral range's top, so port + 10000 is still a valid port."""


class ClusterStartError(RuntimeError):
    """The cluster did not come up; the message carries every node's log tail."""


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def pick_ports(count: int, *, taken: frozenset[int] = frozenset()) -> list[int]:
    """`count` ports P with P and P + 10000 both free and clear of each other's pairs."""
    chosen: list[int] = []
    used = set(taken)
    for _ in range(10_000):
        port = random.randrange(*_PORT_RANGE)
        pair = {port, port + BUS_PORT_OFFSET}
        if pair & used or not all(_port_is_free(p) for p in pair):
            continue
        chosen.append(port)
        used |= pair
        if len(chosen) == count:
            return chosen
    raise ClusterStartError(f"found only {len(chosen)} of {count} free port pairs")


def _admin(port: int) -> redis.Redis:
    """A plain (non-cluster) client on one node: admin commands go to that node only.

    Bytes replies, so keys of any encoding survive GETKEYSINSLOT -> MIGRATE.
    """
    return redis.Redis(host=HOST, port=port, socket_timeout=10, decode_responses=False)


def _cluster(client: redis.Redis, *args: Any) -> Any:
    """CLUSTER <args> on that one node (redis-py leaves execute_command untyped)."""
    return client.execute_command("CLUSTER", *args)  # type: ignore[no-untyped-call]


def _text(reply: Any) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def _slot_map(client: redis.Redis) -> list[tuple[int, int, int]]:
    """This node's view of the slots: sorted (first slot, last slot, master port)."""
    ranges = _cluster(client, "SLOTS")
    return sorted((int(r[0]), int(r[1]), int(r[2][1])) for r in ranges)


@dataclass
class _Node:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class _Migration:
    source: int
    target: int


@dataclass
class RedisClusterForTests:
    """A running cluster: where its nodes are, and the admin moves tests need."""

    workdir: Path
    nodes: list[_Node]
    _clients: dict[int, redis.Redis] = field(default_factory=dict)
    _migrations: dict[int, _Migration] = field(default_factory=dict)

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def urls(self) -> list[str]:
        return [f"redis://{HOST}:{p}" for p in self.ports]

    @property
    def url(self) -> str:
        """The first node: any node is a valid entry point for a cluster client."""
        return self.urls[0]

    @property
    def nodes_csv(self) -> str:
        """`host:port,...`, the REDIS_CLUSTER_NODES form the Node bullmq CLI reads."""
        return ",".join(f"{HOST}:{p}" for p in self.ports)

    def client(self, port: int) -> redis.Redis:
        """The admin client of one node (kept for the cluster's life)."""
        if port not in self._clients:
            self._clients[port] = _admin(port)
        return self._clients[port]

    def node_id(self, port: int) -> str:
        return _text(_cluster(self.client(port), "MYID"))

    def keyslot(self, key: str) -> int:
        return int(_cluster(self.client(self.ports[0]), "KEYSLOT", key))

    def node_for_slot(self, slot: int) -> int:
        """The port of the master that owns `slot` (the source, while it is migrating)."""
        for first, last, port in _slot_map(self.client(self.ports[0])):
            if first <= slot <= last:
                return port
        raise LookupError(f"slot {slot} is not assigned")

    def keys_in_slot(self, slot: int, port: int | None = None) -> list[bytes]:
        """Every key of `slot` held by `port` (default: the owner)."""
        node = self.client(self.node_for_slot(slot) if port is None else port)
        count = int(_cluster(node, "COUNTKEYSINSLOT", slot))
        if count == 0:
            return []
        return list(_cluster(node, "GETKEYSINSLOT", slot, count))

    def flushall(self) -> None:
        """Empty every master, and end any migration a failed test left half done."""
        for slot in list(self._migrations):
            self.abort_migration(slot)
        for port in self.ports:
            self.client(port).flushall()

    # ---------------------------------------------------------------- resharding

    def begin_migration(self, slot: int, to_port: int) -> None:
        """Mark `slot` IMPORTING on `to_port`, then MIGRATING on its owner.

        That order (the one redis-cli uses) means there is no moment when the owner
        redirects with ASK to a node that would not accept the asked command.
        """
        source = self.node_for_slot(slot)
        if source == to_port:
            raise ValueError(f"slot {slot} is already on {to_port}")
        if slot in self._migrations:
            raise ValueError(f"slot {slot} is already migrating")
        _cluster(self.client(to_port), "SETSLOT", slot, "IMPORTING", self.node_id(source))
        _cluster(self.client(source), "SETSLOT", slot, "MIGRATING", self.node_id(to_port))
        self._migrations[slot] = _Migration(source=source, target=to_port)

    def migrate_some(self, slot: int, count: int) -> int:
        """Move up to `count` keys of the migrating `slot` in one MIGRATE; return how many.

        Keys that moved are then answered with ASK by the source; the rest still live
        there, so multi-key commands on the slot may now get TRYAGAIN.
        """
        m = self._migration(slot)
        source = self.client(m.source)
        keys = list(_cluster(source, "GETKEYSINSLOT", slot, count))
        if keys:
            source.migrate(HOST, m.target, keys, 0, MIGRATE_TIMEOUT_MS)
        return len(keys)

    def finish_migration(self, slot: int) -> None:
        """Move the rest of the keys, then give the slot to the target on every master.

        The target is told first, so it serves the slot before the source starts to
        answer MOVED; then the source, then the other masters (gossip would tell them
        too, but only eventually).
        """
        m = self._migration(slot)
        while self.migrate_some(slot, 1000):
            pass
        target_id = self.node_id(m.target)
        others = [p for p in self.ports if p not in (m.source, m.target)]
        for port in [m.target, m.source, *others]:
            _cluster(self.client(port), "SETSLOT", slot, "NODE", target_id)
        del self._migrations[slot]
        self.wait_until_agreed()

    def move_slot(self, slot: int, to_port: int) -> None:
        """Reshard `slot` (and all its keys) to `to_port` in one go."""
        self.begin_migration(slot, to_port)
        self.finish_migration(slot)

    def abort_migration(self, slot: int) -> None:
        """Clear IMPORTING/MIGRATING on both sides; the slot stays with its source.

        Keys already migrated stay on the target, unreachable: only for an emptied slot.
        """
        m = self._migrations.pop(slot)
        for port in (m.target, m.source):
            _cluster(self.client(port), "SETSLOT", slot, "STABLE")

    def _migration(self, slot: int) -> _Migration:
        try:
            return self._migrations[slot]
        except KeyError:
            raise ValueError(f"slot {slot} is not migrating: begin_migration first") from None

    # ---------------------------------------------------------------- lifecycle

    def wait_until_agreed(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Poll until every node says cluster_state:ok with all slots assigned, knows all
        the nodes, and maps the slots the same way as every other node."""
        deadline = time.monotonic() + timeout_s
        last = "no node answered yet"
        while True:
            try:
                problem = self._disagreement()
            except redis.RedisError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem is None:
                return
            last = problem
            if time.monotonic() > deadline:
                raise ClusterStartError(
                    f"cluster not ready after {timeout_s} s: {last}\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _disagreement(self) -> str | None:
        views: dict[int, list[tuple[int, int, int]]] = {}
        for port in self.ports:
            info = _parse_info(_text(_cluster(self.client(port), "INFO")))
            if info.get("cluster_state") != "ok":
                return f"{port}: cluster_state:{info.get('cluster_state')}"
            if info.get("cluster_slots_assigned") != str(SLOTS):
                return f"{port}: cluster_slots_assigned:{info.get('cluster_slots_assigned')}"
            if info.get("cluster_known_nodes") != str(len(self.ports)):
                return f"{port}: cluster_known_nodes:{info.get('cluster_known_nodes')}"
            views[port] = _slot_map(self.client(port))
        first = views[self.ports[0]]
        for port, view in views.items():
            if view != first:
                return f"{port} maps slots as {view}, {self.ports[0]} as {first}"
        return None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of every node's log, for error messages."""
        parts = []
        for node in self.nodes:
            try:
                text = node.log.read_text(errors="replace").splitlines()[-lines:]
            except OSError as exc:
                text = [f"<no log: {exc}>"]
            state = "running" if node.proc.poll() is None else f"exited {node.proc.returncode}"
            parts.append(f"--- {node.port} ({state}) {node.log}\n" + "\n".join(text))
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL) and remove the working directory."""
        for c in self._clients.values():
            c.close()
        self._clients.clear()
        for node in self.nodes:
            stop_server(node.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _parse_info(text: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _spawn(binary: str, port: int, workdir: Path) -> _Node:
    log = workdir / f"redis-{port}.log"
    # fmt: off
    argv = [
        binary, "--port", str(port),
        "--cluster-enabled", "yes",
        "--cluster-config-file", str(workdir / f"nodes-{port}.conf"),
        "--cluster-node-timeout", "2000",
        "--save", "", "--appendonly", "no",
        "--bind", HOST, "--dir", str(workdir), "--daemonize", "no",
    ]
    # fmt: on
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
    return _Node(port, proc, log)


def _wait_for_ping(cluster: RedisClusterForTests) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    for node in cluster.nodes:
        while not answers_ping(HOST, node.port):
            if node.proc.poll() is not None or time.monotonic() > deadline:
                raise ClusterStartError(
                    f"redis-server on {node.port} did not start\n{cluster.log_tail()}"
                )
            time.sleep(0.05)


def _create(cli: str, cluster: RedisClusterForTests) -> None:
    argv = [cli, "--cluster", "create", *cluster.nodes_csv.split(",")]
    argv += ["--cluster-replicas", "0", "--cluster-yes"]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ClusterStartError(f"{' '.join(argv)} timed out\n{cluster.log_tail()}") from exc
    if done.returncode != 0:
        raise ClusterStartError(
            f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}\n"
            f"{cluster.log_tail()}"
        )


def binaries() -> tuple[str, str]:
    """(redis-server, redis-cli) on PATH, or ClusterStartError naming what is missing."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    missing = [name for name, path in (("redis-server", server), ("redis-cli", cli)) if not path]
    if server is None or cli is None:
        raise ClusterStartError(
            f"a Redis Cluster needs {' and '.join(missing)} on PATH "
            "(apt-get install redis-server, which brings redis-cli too)"
        )
    return server, cli


def start_cluster(masters: int = 3) -> RedisClusterForTests:
    """Start `masters` cluster nodes, join them with all slots spread, and wait until every
    node agrees. Raises ClusterStartError (with the logs) and leaves nothing behind."""
    server, cli = binaries()
    workdir = Path(tempfile.mkdtemp(prefix="queueops-cluster-"))
    cluster = RedisClusterForTests(workdir=workdir, nodes=[])
    try:
        for port in pick_ports(masters):
            cluster.nodes.append(_spawn(server, port, workdir))
        _wait_for_ping(cluster)
        _create(cli, cluster)
        cluster.wait_until_agreed()
    except BaseException:
        cluster.stop()
        raise
    atexit.register(cluster.stop)  # idempotent; only matters if teardown never ran
    return cluster


@contextmanager
def redis_cluster(masters: int = 3) -> Iterator[RedisClusterForTests]:
    """`with redis_cluster() as c:`, the cluster gone after the block."""
    cluster = start_cluster(masters)
    try:
        yield cluster
    finally:
        cluster.stop()
