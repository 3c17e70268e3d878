"""Bulk quarantine under concurrency and faults: two runs at once leave no match behind, and
a run cut short by Redis says how many it moved before it stopped (one line, and in --json)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from conftest import REDIS_URL, NodeCall

from bot.patterns import MATCH_CHARS, compile_user_pattern
from bot.queues.bullmq import quarantine
from bot.queues.bullmq.batching import ScriptCall
from bot.queues.bullmq.quarantine import PAGE_SIZE
from bot.queues.service import QueueService
from bot.render_text import render_text
from bot.text import plural
from commands.quarantine import BulkPreviewReply, parse

QUEUEOPS = str(Path(sys.executable).parent / "queueops")


@pytest.mark.parametrize("pattern", [".", "poison", ".*"], ids=["matched", "literal", "match-all"])
async def test_two_concurrent_bulk_runs_leave_no_match_behind(
    service: QueueService, node: NodeCall, prefix: str, pattern: str
) -> None:
    total = 1000
    ids = (await node("fail", queue="jobs", count=total, reason="poison"))["ids"]
    clients = [aioredis.Redis.from_url(REDIS_URL, decode_responses=True) for _ in range(2)]
    try:
        runs = [QueueService(c, prefixes=[prefix], queues=["jobs"]) for c in clients]
        results = await asyncio.gather(
            *(
                r.quarantine_matching(
                    "jobs",
                    compile_user_pattern(pattern),
                    limit=10_000,
                    reason="r",
                    actor=f"t{i}",
                    batch_size=batch_size,  # different paces: they overtake each other
                )
                for i, (r, batch_size) in enumerate(zip(runs, (50, 20), strict=True))
            )
        )
    finally:
        for c in clients:
            await c.aclose()
    moved = [m.job_id for r in results for m in r.moved]
    assert sorted(moved, key=int) == sorted(ids, key=int)  # all of them, each by one run
    assert all(not r.skipped for r in results)  # what the other run took is not a problem
    counts = await node("counts", queues=["jobs", "jobs-dlq"])
    assert (counts["jobs"]["failed"], counts["jobs-dlq"]["failed"]) == (0, total)


class CuttingProxy:
    """A TCP proxy to the test Redis that goes away for good (connections dropped, port
    closed) once the client has sent `rounds` writes carrying `marker` (a bulk move sends a
    round of pipelined calls of its move script in one write; pages are read apart): Redis
    vanishing mid-move, between two rounds."""

    def __init__(self, rounds: int, marker: str) -> None:
        target = urlsplit(REDIS_URL)
        self.host, self.port = target.hostname or "127.0.0.1", target.port or 6379
        self.left = rounds
        self.marker = marker.encode()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.cut = asyncio.Event()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut.is_set():
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    if count:
                        self.left -= int(self.marker in data)
                        if self.left < 0:
                            self._cut()
                            return
                    dst.write(data)
                    await dst.drain()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    def _cut(self) -> None:
        self.cut.set()
        if self.server is not None:
            self.server.close()
        for w in self.writers:
            w.close()


async def test_bulk_cut_short_by_redis_says_how_many_moved(
    service: QueueService, node: NodeCall, prefix: str
) -> None:
    total = PAGE_SIZE + 500
    await node("fail", queue="jobs", count=total, reason="poison")
    # Two rounds of moves (pages are read beside them); then Redis is gone. The script is
    # loaded first, so those two rounds are moves, not NOSCRIPT answers.
    move = service.store.scripts.quarantine_failed
    await service.redis.script_load(move.script)
    proxy = CuttingProxy(rounds=2, marker=move.sha)
    port = await proxy.start()
    db = urlsplit(REDIS_URL).path or "/0"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("QUEUEOPS_")},
        "REDIS_URL": f"redis://127.0.0.1:{port}{db}",
        "QUEUEOPS_PREFIX": prefix,
        "QUEUEOPS_STATE_PREFIX": f"{prefix}-state",
        "QUEUEOPS_QUEUES": "jobs",
    }
    proc = await asyncio.create_subprocess_exec(
        QUEUEOPS,
        "quarantine",
        "jobs",
        "--failed-matching",
        "pois[o]n",  # a regex: pages are read beside the moves
        "--limit",
        str(total),
        "--json",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    in_dlq = (await node("counts", queues=["jobs-dlq"]))["jobs-dlq"]["failed"]
    assert proxy.cut.is_set() and 0 < in_dlq < total
    assert proc.returncode == 1
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err.decode(), err.decode()
    assert lines[0].startswith(f"queueops: Redis unreachable at 127.0.0.1:{port}")
    # Moves whose answer the cut swallowed may or may not have run: the line says how many
    # are certain and bounds the rest, never less than what the DLQ holds.
    said = re.search(
        r"stopped after moving (\d+) failed jobs?(?: \(and up to (\d+) more)?", lines[0]
    )
    assert said is not None, lines[0]
    certain, maybe = int(said[1]), int(said[2] or 0)
    assert certain <= in_dlq <= certain + maybe, lines[0]
    assert "from 'jobs' to 'jobs-dlq'" in lines[0]
    document = json.loads(out)
    assert document["ok"] is False
    assert f"stopped after moving {plural(certain, 'failed job')}" in document["error"]


def test_limit_has_no_upper_bound() -> None:
    words = ["jobs", "--failed-matching", "ECONNRESET", "--limit", "250000"]
    assert parse(words).limit == 250_000


async def test_preview_counts_every_match_and_shows_a_few(
    service: QueueService, node: NodeCall
) -> None:
    await node("fail", queue="jobs", count=30, reason="poison")
    everything = await service.preview_failed_matching(
        "jobs", compile_user_pattern(".*"), limit=1000
    )
    # A match-all pattern is counted (ZCARD), not read job by job.
    assert (everything.count, everything.read, len(everything.sample)) == (30, 0, 15)
    assert everything.counted_without_reading
    capped = await service.preview_failed_matching("jobs", compile_user_pattern(".*"), limit=10)
    assert capped.count == 10
    matched = await service.preview_failed_matching(
        "jobs", compile_user_pattern("poison #1"), limit=1000
    )
    assert (matched.count, matched.read) == (11, 30)  # #1, #10..#19
    reply = BulkPreviewReply(
        queue="jobs",
        dlq="jobs-dlq",
        pattern=".*",
        limit=1000,
        count=everything.count,
        read=everything.read,
        counted_without_reading=True,
        matches=everything.sample,
    )
    assert render_text(reply.view()).startswith(
        "!! "
        "would move 30 failed jobs matching /.*/ from 'jobs' to 'jobs-dlq' "
        "(every failed job matches; counted, not read)"
    )
    assert (await node("counts", queues=["jobs"]))["jobs"]["failed"] == 30


async def test_match_all_moves_everything_it_can_and_names_what_it_cannot(
    service: QueueService, node: NodeCall, prefix: str
) -> None:
    ids = (await node("fail", queue="jobs", count=30, reason="poison"))["ids"]
    # An id in `failed` with no job hash, the oldest entry: it stays, and is reported.
    await service.redis.zadd(f"{prefix}:jobs:failed", {"ghost": 0})
    result = await service.quarantine_matching(
        "jobs", compile_user_pattern(".*"), limit=1000, reason="r", actor="t", batch_size=7
    )
    assert sorted(m.job_id for m in result.moved) == sorted(ids)
    assert [m.job_id for m in result.skipped] == ["ghost"]
    assert result.skipped[0].problem == (
        "'jobs' lists failed job ghost but holds no data for it; left as it is"
    )
    counts = await node("counts", queues=["jobs", "jobs-dlq"])
    assert (counts["jobs"]["failed"], counts["jobs-dlq"]["failed"]) == (1, 30)


async def test_a_bulk_move_reads_the_next_pages_while_redis_moves_jobs(
    service: QueueService, node: NodeCall, monkeypatch: pytest.MonkeyPatch
) -> None:
    total = 5 * PAGE_SIZE
    await node("fail", queue="jobs", count=total, reason="poison")
    moving = most_moving = pages_read_while_moving = 0
    run_round, failed_page = quarantine.run_round, quarantine.failed_page

    async def tracked_round(redis: aioredis.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
        nonlocal moving, most_moving
        moving += 1
        most_moving = max(most_moving, moving)
        try:
            return await run_round(redis, calls)
        finally:
            moving -= 1

    async def tracked_page(*args: Any, **kwargs: Any) -> list[quarantine.FailedEntry]:
        nonlocal pages_read_while_moving
        pages_read_while_moving += moving > 0
        return await failed_page(*args, **kwargs)

    monkeypatch.setattr(quarantine, "run_round", tracked_round)
    monkeypatch.setattr(quarantine, "failed_page", tracked_page)
    result = await service.quarantine_matching(
        "jobs", compile_user_pattern("pois[o]n"), limit=total, reason="r", actor="t", batch_size=50
    )
    assert len(result.moved) == total and result.batches == total // 50
    # Redis is never left waiting for the client: the next move call is sent before the
    # one before it is answered, and pages are read and matched meanwhile. One after the
    # other (read, match, move, read...), a third of a bulk move was the client's time.
    assert most_moving == quarantine.IN_FLIGHT
    assert pages_read_while_moving >= 2, pages_read_while_moving


async def test_a_page_of_long_reasons_stays_short_and_cuts_whole_characters(
    service: QueueService, prefix: str
) -> None:
    # Reasons can be megabytes; only the first MATCH_CHARS characters are matched. 'x' and
    # then two-byte characters: the byte cut falls inside one, so it goes back before it.
    reason = "x" + "é" * quarantine.REASON_BYTES
    for i in range(100):
        await service.redis.hset(f"{prefix}:jobs:{i}", mapping={"failedReason": reason})
        await service.redis.zadd(f"{prefix}:jobs:failed", {str(i): i})
    page = await quarantine.failed_page(service.store, service.ref("jobs"), None)
    kept = "x" + "é" * ((quarantine.REASON_BYTES - 1) // 2)
    assert {e.reason for e in page} == {kept}  # valid UTF-8, not a byte more than allowed
    assert len(kept) >= MATCH_CHARS
    # The page ends once PAGE_BYTES of reasons are in it; the next starts after it.
    assert len(page) == -(-quarantine.PAGE_BYTES // len(kept.encode()))
    rest = await quarantine.failed_page(service.store, service.ref("jobs"), page[-1])
    assert rest[0].job_id == str(len(page))


async def test_plain_text_is_matched_inside_redis_as_re2_would(
    service: QueueService, node: NodeCall, prefix: str, redis: aioredis.Redis
) -> None:
    """A pattern without regex syntax is matched by the move script (no pages read): same
    jobs as the client's RE2 would pick, the limit kept, the run's place cleaned up."""
    older = (await node("fail", queue="jobs", count=5, reason="all fine"))["ids"]
    poison = (await node("fail", queue="jobs", count=10, reason="poison pill"))["ids"]
    far = (await node("fail", queue="jobs", count=2, reason="x" * 2100 + "poison"))["ids"]
    deep = "é" * 1990 + "poison"  # 1,996 characters, 3,986 bytes: inside the window
    near = (await node("fail", queue="jobs", count=2, reason=deep))["ids"]
    assert compile_user_pattern("poison").literal == "poison"
    # Oldest first means the failed set's order (when each failed), not the ids'.
    in_order = [i for i in await redis.zrange(f"{prefix}:jobs:failed", 0, -1) if i in poison]
    first = await service.quarantine_matching(
        "jobs", compile_user_pattern("poison"), limit=4, reason="r", actor="t", batch_size=3
    )
    assert [m.job_id for m in first.moved] == in_order[:4]
    rest = await service.quarantine_matching(
        "jobs", compile_user_pattern("poison"), limit=1000, reason="r", actor="t"
    )
    assert sorted(m.job_id for m in rest.moved) == sorted(in_order[4:] + near)
    assert rest.scanned == len(older) + 6 + len(far) + len(near) and rest.matched == 8
    counts = await node("counts", queues=["jobs", "jobs-dlq"])
    assert (counts["jobs"]["failed"], counts["jobs-dlq"]["failed"]) == (7, 12)
    assert not [k async for k in redis.scan_iter(match=f"{prefix}:jobs:qo-bulk:*")]
    regex = await service.bullmq.find_failed_matching(
        "jobs", compile_user_pattern("pois[o]n"), limit=9
    )
    assert regex == ([], 7)  # the regex path agrees: nothing left that matches
