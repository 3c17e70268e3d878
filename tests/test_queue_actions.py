"""The queue actions (issue 14 §8: clean, empty, obliterate, add, schedulers), read-only
queues (§10) and a Redis out of request quota (§11), end to end: words through the
dispatcher (or the installed CLI) on the session's real Redis, with the real npm bullmq
writing the state before and checking what queueops left after."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from cli_runner import Run, run_cli
from conftest import REDIS_URL, NodeCall
from node_bullmq import INTEROP_DIR

from bot.config import load_settings
from bot.dispatch import Dispatcher, make_dispatcher
from bot.errors import Refused
from bot.queues.bullmq import queue_actions
from bot.queues.service import QueueService
from bot.roles import Role
from commands.queue_actions import (
    AddReply,
    CleanPreview,
    CleanReply,
    EmptyReply,
    ObliterateReply,
    SchedulersReply,
)
from commands.reply import ErrorReply, Reply
from commands.runner import ConfirmationNeeded

QUOTA = b"-ERR max requests limit exceeded. Limit: 10000, Usage: 10000.\r\n"


def make(redis: aioredis.Redis, prefix: str, **settings: Any) -> Dispatcher:
    config = load_settings(
        redis_url=REDIS_URL, prefix=prefix, state_prefix=f"{prefix}-state", **settings
    )
    return make_dispatcher(redis, config, rate_limited=False)


async def run(dispatcher: Dispatcher, line: str, *, confirmed: bool = True) -> Reply:
    outcome = await dispatcher.run(
        shlex.split(line), actor="test", role=Role.ADMIN, transport="shell", confirmed=confirmed
    )
    return outcome.reply


def error(reply: Reply) -> str:
    assert isinstance(reply, ErrorReply), reply
    assert "\n" not in reply.message
    return reply.message


async def keys_of(redis: aioredis.Redis, prefix: str, queue: str) -> list[str]:
    return [k async for k in redis.scan_iter(match=f"{prefix}:{queue}:*", count=1000)]


async def node_script(prefix: str, body: str) -> Any:
    """Run `body` (an async JS function body getting `Queue`, `Worker`, `connection`,
    `prefix`) with npm bullmq, for what bullmq-cli.mjs has no command for; its return value
    is printed as JSON."""
    script = f"""
import IORedis from 'ioredis';
import {{ Queue, Worker }} from 'bullmq';
const connection = new IORedis(process.env.REDIS_URL, {{ maxRetriesPerRequest: null }});
const prefix = {json.dumps(prefix)};
const main = async () => {{ {body} }};
try {{
  process.stdout.write(JSON.stringify((await main()) ?? null));
}} finally {{
  await connection.quit();
}}
"""
    proc = await asyncio.create_subprocess_exec(
        "node",
        "--input-type=module",
        "-e",
        script,
        cwd=str(INTEROP_DIR),
        env={**os.environ, "REDIS_URL": REDIS_URL},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


# --- clean ---


async def test_clean_removes_only_old_finished_jobs_and_npm_sees_them_gone(
    redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    d = make(redis, prefix, queues="c")
    old = (await node("fail", queue="c", count=3, reason="old"))["ids"]
    await asyncio.sleep(1.2)
    new = (await node("fail", queue="c", count=2, reason="new"))["ids"]

    asked = await run(d, "clean c --state failed --older-than 1s --limit 2", confirmed=False)
    assert isinstance(asked, ConfirmationNeeded)
    assert isinstance(asked.preview, CleanPreview) and asked.preview.count == 3
    assert "clean would remove 2 failed jobs" in asked.view()[0].text  # type: ignore[union-attr]

    first = await run(d, "clean c --state failed --older-than 1s --limit 2")
    assert isinstance(first, CleanReply)
    assert (first.result.removed, first.result.left_older) == (2, 1)
    second = await run(d, "clean c --state failed --older-than 1s")
    assert isinstance(second, CleanReply) and second.result.removed == 1
    for job_id in old:
        assert await node("job", queue="c", id=job_id) is None
    for job_id in new:
        assert (await node("job", queue="c", id=job_id))["state"] == "failed"
    assert (await node("counts", queues=["c"]))["c"]["failed"] == 2
    # Nothing completed that old: said as it is, nothing to confirm.
    none = await run(d, "clean c --state completed --older-than 1h", confirmed=False)
    assert isinstance(none, CleanPreview) and none.nothing_to_do


# --- empty ---


async def test_empty_needs_the_queue_name_typed_and_drops_waiting_and_delayed(
    redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    d = make(redis, prefix, queues="e,p")
    await node("fail", queue="e", count=1, reason="kept")
    await node(
        "add",
        queue="e",
        jobs=[
            *({"name": "w", "data": {"n": n}} for n in range(450)),  # more than one batch
            {"name": "later", "opts": {"delay": 3_600_000}},
            {"name": "later", "opts": {"delay": 7_200_000}},
            {"name": "urgent", "opts": {"priority": 5}},
        ],
    )
    for line in ("empty e", "empty e --confirm E", "empty e --confirm p"):
        said = error(await run(d, line))
        assert said.startswith("empty removes 453 waiting or delayed jobs in 'e'"), said
        assert "type the queue's name: empty e --confirm e" in said
    assert (await node("counts", queues=["e"]))["e"]["waiting"] == 450

    done = await run(d, "empty e --confirm e")
    assert isinstance(done, EmptyReply)
    assert done.result.removed == {"waiting": 450, "delayed": 2, "prioritized": 1}
    counts = (await node("counts", queues=["e"]))["e"]
    assert (counts["waiting"], counts["delayed"], counts["prioritized"]) == (0, 0, 0)
    assert counts["failed"] == 1  # failed, completed and active jobs are not its business
    assert await redis.exists(f"{prefix}:e:2", f"{prefix}:e:454") == 0  # their hashes too
    assert await redis.exists(f"{prefix}:e:1") == 1  # the failed one stays

    # A paused queue's jobs (npm keeps them in `paused`) go the same way.
    await node("pause", queue="p")
    await node("add", queue="p", jobs=[{"name": "w"}, {"name": "w"}])
    assert isinstance(await run(d, "empty p --confirm p"), EmptyReply)
    counts = (await node("counts", queues=["p"]))["p"]
    assert counts["paused"] + counts["waiting"] == 0
    assert (await node("is-paused", queue="p"))["paused"] is True


# --- obliterate ---


async def test_obliterate_is_refused_while_a_job_is_active_unless_forced(
    redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    d = make(redis, prefix, queues="o,plain")
    await node("populate", queue="o")  # one job held in `active`
    said = error(await run(d, "obliterate o"))
    assert "type the queue's name: obliterate o --confirm o" in said
    said = error(await run(d, "obliterate o --confirm o"))
    assert "has 1 active job(s); obliterate refused" in said and "--force" in said
    assert (await node("is-paused", queue="o"))["paused"] is False  # left as it was
    assert (await node("counts", queues=["o"]))["o"]["active"] == 1

    forced = await run(d, "obliterate o --confirm o --force")
    assert isinstance(forced, ObliterateReply) and forced.result.forced
    counts = (await node("counts", queues=["o"]))["o"]
    # npm's obliterate leaves a flow parent waiting for its children; so does ours.
    assert {s: n for s, n in counts.items() if n} in ({}, {"waiting-children": 1})

    # A queue of plain jobs in every simple state: no key of it is left.
    await node("fail", queue="plain", count=2, reason="x")
    await node(
        "add",
        queue="plain",
        jobs=[
            {"name": "w"},
            {"name": "d", "opts": {"delay": 60_000}},
            {"name": "p", "opts": {"priority": 2}},
        ],
    )
    await node("process", queue="plain", count=1)
    assert await keys_of(redis, prefix, "plain")
    done = await run(d, "obliterate plain --confirm plain")
    assert isinstance(done, ObliterateReply)
    assert await keys_of(redis, prefix, "plain") == []
    assert all(n == 0 for n in (await node("counts", queues=["plain"]))["plain"].values())


async def test_an_obliterate_stopped_by_a_new_active_job_leaves_the_queue_unpaused(
    redis: aioredis.Redis, prefix: str, node: NodeCall, service: QueueService
) -> None:
    """npm bullmq leaves a queue paused when obliterate fails half-way; queueops resumes it
    (it was not paused before) and says how far it got."""
    await node("add", queue="half", jobs=[{"name": "w", "data": {"n": n}} for n in range(3000)])
    ref = await service.bullmq.require_queue("half")

    async def a_worker_takes_a_job() -> None:
        # What moveToActive leaves in Redis: the job id in `active` (a worker that took it
        # just before the pause reached Redis).
        for _ in range(5000):  # until obliterate has paused the queue (5 s at most)
            if await redis.hexists(f"{prefix}:half:meta", "paused"):
                break
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.02)
        await redis.lpush(f"{prefix}:half:active", "taken")

    taker = asyncio.create_task(a_worker_takes_a_job())
    with pytest.raises(Refused) as err:
        await queue_actions.obliterate(service.bullmq.store, ref, force=False, batch=1)
    await taker
    said = str(err.value)
    assert "stopped after" in said and "a job became active" in said, said
    assert "the queue is resumed again" in said
    assert (await node("is-paused", queue="half"))["paused"] is False
    assert 0 < (await node("counts", queues=["half"]))["half"]["waiting"] < 3000


# --- add ---


async def test_add_writes_a_job_npm_reads_with_its_options(
    redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    d = make(redis, prefix, queues="billing")
    added = await run(
        d,
        """add billing backfill '{"invoice": 42, "lines": [1, 2]}' --delay 5m --priority 3 """
        "--job-id inv-42",
    )
    assert isinstance(added, AddReply) and added.job.job_id == "inv-42"
    job = await node("job", queue="billing", id="inv-42")
    assert job["name"] == "backfill" and job["data"] == {"invoice": 42, "lines": [1, 2]}
    assert job["opts"]["delay"] == 300_000 and job["opts"]["priority"] == 3
    assert job["state"] == "delayed"

    plain = await run(d, "add billing requeue '{\"id\": 7}'")
    assert isinstance(plain, AddReply)
    assert (await node("job", queue="billing", id=plain.job.job_id))["state"] == "waiting"
    processed = (await node("process", queue="billing", count=1))["processed"]
    assert processed[0]["data"] == {"id": 7}

    assert "already exists" in error(await run(d, "add billing x '{}' --job-id inv-42"))
    assert error(await run(d, "add billing x '{nope'")).startswith("JSON is not valid")
    big = json.dumps({"x": "a" * 70_000})
    assert "add takes at most 65,536" in error(await run(d, f"add billing x '{big}'"))


# --- schedulers ---


async def test_schedulers_lists_an_npm_job_scheduler_with_next_and_last_run(
    redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    d = make(redis, prefix, queues="maint")
    empty = await run(d, "schedulers maint")
    assert isinstance(empty, SchedulersReply) and empty.listing.schedulers == []
    made = await node_script(
        prefix,
        """
const queue = new Queue('maint', { connection, prefix });
await queue.upsertJobScheduler('nightly-cleanup', { every: 86400000 }, { name: 'cleanup' });
const workerConnection = connection.duplicate();
const done = new Promise(resolve => {
  const worker = new Worker('maint', async () => 'ok', { connection: workerConnection, prefix });
  worker.on('completed', async job => { await worker.close(); resolve(job.id); });
});
const completed = await done;
await workerConnection.quit();
await new Promise(r => setTimeout(r, 200));
const scheduler = await queue.getJobScheduler('nightly-cleanup');
await queue.add('legacy-report', {}, { repeat: { pattern: '0 3 * * *' }, delay: 0 });
await queue.close();
return { completed, next: scheduler.next };
""",
    )
    reply = await run(d, "schedulers maint")
    assert isinstance(reply, SchedulersReply)
    [s, legacy] = sorted(reply.listing.schedulers, key=lambda x: x.legacy)
    assert (legacy.job_name, legacy.pattern, legacy.legacy) == ("legacy-report", "0 3 * * *", True)
    assert (s.key, s.job_name, s.every_ms, s.legacy) == (
        "nightly-cleanup",
        "cleanup",
        86_400_000,
        False,
    )
    assert s.next_ms == made["next"]
    assert made["completed"].startswith("repeat:nightly-cleanup:")
    assert s.last_completed_ms is not None
    text = json.dumps(reply.data())
    assert "nextMs" in text and "lastCompletedMs" in text
    # empty keeps the scheduler's next run, as npm's drain does.
    kept = await run(d, "empty maint --confirm maint")
    assert isinstance(kept, EmptyReply) and kept.result.kept_scheduler_jobs == 2


# --- read-only queues ---


async def test_a_read_only_queue_refuses_every_change_for_an_admin(
    redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    d = make(redis, prefix, queues="billing-eu,other", readonly="billing-*")
    await node("fail", queue="billing-eu", count=2, reason="poison")
    before = (await node("counts", queues=["billing-eu"]))["billing-eu"]
    changes = (
        "quarantine billing-eu 1 --reason bad",
        "quarantine billing-eu --failed-matching poison",
        "dlq replay billing-eu --count 1",
        "pause billing-eu",
        "resume billing-eu",
        "retry billing-eu",
        "clean billing-eu --state failed --older-than 0s",
        "empty billing-eu --confirm billing-eu",
        "empty billing-eu",
        "obliterate billing-eu --confirm billing-eu --force",
        "add billing-eu x '{}'",
        "promote billing-eu --all",
        "promote billing-eu 1",
        "remove billing-eu --state failed",
        "retry billing-eu --name poison",
    )
    for line in changes:
        said = error(await run(d, line))
        assert said == (
            "'billing-eu' is read-only (QUEUEOPS_READONLY: billing-*); queueops changes "
            "nothing in it"
        ), (line, said)
    # In chat, before the confirmation is even asked for.
    for line in (
        "quarantine billing-eu --failed-matching poison",
        "clean billing-eu --state failed --older-than 0s",
        "dlq replay billing-eu --count 1",
    ):
        assert "read-only" in error(await run(d, line, confirmed=False))
    assert (await node("counts", queues=["billing-eu"]))["billing-eu"] == before
    assert (await node("is-paused", queue="billing-eu"))["paused"] is False
    # Reads still work, and other queues still change.
    assert (await run(d, "snapshot billing-eu")).ok
    assert (await run(d, "schedulers billing-eu")).ok
    assert (await run(d, "pause other")).ok
    # A full-name entry matches prefix and name each on its own.
    full = make(redis, prefix, queues="billing-eu", readonly=f"{prefix}:bill*")
    assert "read-only" in error(await run(full, "retry billing-eu"))
    elsewhere = make(redis, prefix, queues="billing-eu", readonly="nope:bill*")
    assert (await run(elsewhere, "retry billing-eu --count 1")).ok


# --- quota exhausted ---


class QuotaProxy:
    """A TCP proxy in front of the session's Redis that forwards `allowed` commands and
    then answers every command as Upstash does when a plan's requests are used up. It
    frames RESP requests (arrays of bulk strings, what redis-py sends) to count them."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.seen = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def url(self) -> str:
        db = urlparse(REDIS_URL).path or "/0"
        return f"redis://127.0.0.1:{self.port}{db}"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up = urlparse(REDIS_URL)
        up_reader, up_writer = await asyncio.open_connection(up.hostname, up.port)
        pipe = asyncio.create_task(self._pump(up_reader, writer))
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    break
                self.seen += 1
                if self.seen <= self.allowed:
                    up_writer.write(request)
                    await up_writer.drain()
                else:
                    writer.write(QUOTA)
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            pipe.cancel()
            up_writer.close()
            writer.close()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
        head = await reader.readline()
        if not head:
            return None
        assert head.startswith(b"*"), head
        parts = [head]
        for _ in range(int(head[1:])):
            size = await reader.readline()
            parts += [size, await reader.readexactly(int(size[1:]) + 2)]
        return b"".join(parts)

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()


@pytest_asyncio.fixture
async def proxy() -> AsyncIterator[QuotaProxy]:
    found = QuotaProxy(allowed=0)
    await found.start()
    yield found
    await found.close()


def quota_line(message: str) -> None:
    assert "has used up its request quota" in message, message
    assert "max requests limit exceeded" in message
    assert "cron mode" in message and "budget" in message and "paid plan" in message
    assert "refused the command" not in message and "unexpectedly" not in message


async def test_a_redis_out_of_quota_is_named_with_the_fix_in_the_cli(
    proxy: QuotaProxy, prefix: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEOPS_")}
    env |= {
        "REDIS_URL": proxy.url(),
        "QUEUEOPS_PREFIX": prefix,
        "QUEUEOPS_QUEUES": "a",
        "QUEUEOPS_STATE_PREFIX": f"{prefix}-state",
    }
    result = Run(*await run_cli(("snapshot",), env))
    assert result.code == 1, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    quota_line(lines[0])
    assert proxy.seen >= 1


async def test_a_redis_that_runs_out_of_quota_mid_session_is_named_in_chat(
    proxy: QuotaProxy, prefix: str, node: NodeCall
) -> None:
    await node("fail", queue="a", count=1, reason="x")
    proxy.allowed = 10_000
    client = aioredis.Redis.from_url(proxy.url(), decode_responses=True)
    try:
        d = make(client, prefix, queues="a")
        assert (await run(d, "snapshot")).ok  # through the proxy, while there is quota
        proxy.allowed = proxy.seen  # the plan's limit is reached now
        for line in ("snapshot", "retry a", "add a x '{}'", "schedulers a"):
            quota_line(error(await run(d, line)))
    finally:
        await client.aclose()


@pytest.mark.parametrize("line", ["empty q --confirm", "obliterate"])
def test_named_confirmations_need_their_words(line: str) -> None:
    from bot.errors import UsageError
    from commands.registry import resolve

    command, rest = resolve(shlex.split(line))
    with pytest.raises(UsageError):
        command.parse(rest)
