"""`find` and `failures`: a bounded, batched scan of a queue's jobs, newest first.

BullMQ has no search (bullmq #2135): a job is found by reading jobs. So a scan reads
states one after the other, each newest first (a sorted set by ZREVRANGE index, a list by
LRANGE from its head, where BullMQ pushes), in pages of PAGE_SIZE jobs, one call of
lua/scan_page.lua a page (it says why a script: each field cut inside Redis). It stops at
the `scan` bound (10,000 jobs by default) or once `limit` jobs matched, and says how many
it looked at of how many and whether it stopped before the end.

Why pages of 200 (100 with stack frames): measured on this 2-core VM with other test
runs beside it (Redis 7; INFO commandstats, bench/find_and_failures.py), a job costs 6-8 us
of Redis time in a page and its stack frame 4 us more: a page of 200 averages 1.3 ms, of
500 3.5 ms with tails past 10 ms under load, so 200 (and 100 with frames, ~0.8 ms) keep
the tail within the 10 ms no call may take. A page also ends early past PAGE_BYTES of
returned text, so megabyte reasons or payloads make it shorter, not longer.

Every condition a person gives runs off the event loop or in bounded time: the regex on
RE2 in a thread (bot/patterns.py), the payload tests (JSON parsing of up to DATA_BYTES a
job) and the failure normalising in a thread, the name and age tests in O(1) a job.

A scan of a live queue is not a snapshot: a job that moves while the scan runs may be
seen twice (once is kept: ids are de-duplicated) or not at all. For a search that is the
honest trade: holding the queue still would mean one call over the whole state.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.errors import UsageError
from bot.patterns import MATCH_CHARS
from bot.queues.bullmq.store import QueueStore
from bot.queues.failure_clusters import ClusterSet, cluster_key, normalise
from bot.queues.keys import QueueRef
from bot.queues.models import (
    FailureCluster,
    FailureReport,
    FindResult,
    FoundJob,
    JobFilter,
    ScanStats,
    Tally,
)

STATE_KEYS: dict[str, tuple[str, str]] = {
    "failed": ("failed", "zset"),
    "active": ("active", "list"),
    "waiting": ("wait", "list"),
    "paused": ("paused", "list"),
    "prioritized": ("prioritized", "zset"),
    "delayed": ("delayed", "zset"),
    "waiting-children": ("waiting-children", "zset"),
    "completed": ("completed", "zset"),
}
"""State word -> (key suffix, kind), in the order a scan of every state reads them: what
a person looks for first (failed, then what is stuck), completed last (the largest set,
and the least likely to hold the job that is the problem)."""
STATES = tuple(STATE_KEYS)

PAGE_SIZE = 200
FRAME_PAGE_SIZE = 100
"""A page that also reads each job's stack trace for its first frame (`failures`, a
--cluster selection): the stack costs about as much again as the rest of the job."""
CUT_BYTES = 4 * MATCH_CHARS
"""Bytes of a reason (and of a name, a stack frame) a page returns: the regex and the
clusters look at MATCH_CHARS characters, and a UTF-8 character is at most 4 bytes."""
DATA_BYTES = 65_536
"""A payload longer than this is not searched by --data/--data-path (counted as too large):
parsing it would cost the client more than a search should."""
PAGE_BYTES = 512_000
"""Bytes of text after which a page ends early."""
DEFAULT_SCAN = 10_000
MAX_SCAN = 1_000_000
FAILURES_SCAN = 1_000
DATA_TEXT_CHARS = 200
"""Longest --data text and --data-path value accepted."""
LIST_LOOKUP_BOUND = 20_000
"""Entries of a list --id looks through from each end (LPOS MAXLEN: ~1 ms at 40 ns an
entry, the cost bot/queues/bullmq/quarantine.py measured)."""


@dataclass(frozen=True)
class ScannedJob:
    job_id: str
    name: str
    state: str
    timestamp: int | None
    processed_on: int | None
    finished_on: int | None
    attempts: int
    reason: str
    frame: str
    data: str
    data_len: int

    def found(self) -> FoundJob:
        first = self.reason.splitlines()[0][:300] if self.reason else None
        return FoundJob(
            job_id=self.job_id,
            job_name=self.name,
            state=self.state,
            timestamp=self.timestamp,
            finished_on=self.finished_on,
            attempts=self.attempts,
            failed_reason=first,
        )


def _int(text: Any) -> int | None:
    try:
        return int(float(text)) if text not in ("", None) else None
    except (TypeError, ValueError):
        return None


def _unescaped(frame: str) -> str:
    """A frame as the script cut it from the stack's JSON text, with its escapes undone
    (`\\/` is `/`: cjson and some clients escape slashes); left as it is if the cut
    ended inside an escape."""
    if "\\" not in frame:
        return frame
    try:
        return str(json.loads(f'"{frame}"'))
    except ValueError:
        return frame


def check_states(states: Sequence[str]) -> tuple[str, ...]:
    """The states asked for, in scan order; UsageError naming the valid words."""
    unknown = [s for s in states if s not in STATE_KEYS]
    if unknown:
        raise UsageError(f"'{unknown[0]}' is not a job state; use one of {', '.join(STATES)}")
    return tuple(s for s in STATES if s in states) or STATES


@dataclass
class Scan:
    """One bounded scan and its tally."""

    store: QueueStore
    queue: QueueRef
    states: tuple[str, ...]
    bound: int
    want_data: bool = False
    want_frame: bool = False
    page_size: int = 0
    """Jobs a page; 0: PAGE_SIZE, or FRAME_PAGE_SIZE when the frames are read."""
    looked: int = 0
    calls: int = 0
    total: int = 0
    finished: bool = False
    """Every job of the states scanned was looked at."""
    slowest_ms: float = 0.0
    """The slowest page call as the client saw it (the benchmark reads it)."""
    note: str | None = None
    """What the scan could not say by its counts (a job found by id but not placed)."""
    sizes: dict[str, int] | None = None
    """Jobs per state when the scan began (totals): a state that was empty is not read."""
    _seen: set[str] = field(default_factory=set)

    async def totals(self) -> int:
        """How many jobs the states hold now: one pipeline of ZCARD/LLEN."""
        async with self.store.redis.pipeline(transaction=False) as pipe:
            for state in self.states:
                key, kind = STATE_KEYS[state]
                if kind == "zset":
                    pipe.zcard(self.queue.key(key))
                else:
                    pipe.llen(self.queue.key(key))
            counts = await pipe.execute()
        self.calls += 1
        self.sizes = {state: int(c) for state, c in zip(self.states, counts, strict=True)}
        self.total = sum(self.sizes.values())
        return self.total

    async def page(self, state: str, first: int, size: int) -> tuple[int, bool, list[ScannedJob]]:
        """One call: (jobs looked at, whether the state has none past them, the jobs)."""
        key, kind = STATE_KEYS[state]
        started = time.perf_counter()
        looked, ended, rows_json = await self.store.scripts.scan_page(
            keys=[self.queue.key(key)],
            args=[
                self.queue.base,
                kind,
                first,
                size,
                "1" if self.want_data else "0",
                CUT_BYTES,
                DATA_BYTES,
                PAGE_BYTES,
                "1" if self.want_frame else "0",
            ],
        )
        self.slowest_ms = max(self.slowest_ms, (time.perf_counter() - started) * 1000)
        self.calls += 1
        jobs = []
        for row in json.loads(rows_json):
            job_id = str(row[0])
            if row[1] is False or job_id in self._seen:
                continue  # its hash is gone (removed meanwhile), or seen in another state
            self._seen.add(job_id)
            jobs.append(
                ScannedJob(
                    job_id=job_id,
                    name=str(row[1]),
                    state=state,
                    timestamp=_int(row[2]),
                    processed_on=_int(row[3]),
                    finished_on=_int(row[4]),
                    attempts=_int(row[5]) or 0,
                    reason=str(row[6]),
                    frame=_unescaped(str(row[7])),
                    data=str(row[8]),
                    data_len=int(row[9]),
                )
            )
        return int(looked), bool(int(ended)), jobs

    async def pages(self) -> AsyncIterator[list[ScannedJob]]:
        """Pages of jobs, newest first, state by state, until the bound or the end."""
        for state in self.states:
            if self.sizes is not None and not self.sizes.get(state):
                continue
            first = 0
            while True:
                room = self.bound - self.looked
                if room <= 0:
                    # The bound reached exactly at the end: every job was looked at.
                    self.finished = self.looked >= self.total and self._rest_empty(state)
                    return
                size = self.page_size or (FRAME_PAGE_SIZE if self.want_frame else PAGE_SIZE)
                looked, ended, jobs = await self.page(state, first, min(size, room))
                first += looked
                self.looked += looked
                if jobs:
                    yield jobs
                if ended or looked == 0:
                    break
        self.finished = True

    def _rest_empty(self, state: str) -> bool:
        """Whether the states after `state` held no job when the scan began."""
        later = self.states[self.states.index(state) + 1 :]
        return self.sizes is not None and not any(self.sizes.get(s) for s in later)

    async def at_index(self, job_id: str) -> list[ScannedJob]:
        """--id: the job itself, found by its rank (a sorted set: ZREVRANK, O(log N)) or its
        place within LIST_LOOKUP_BOUND of either end of a list (LPOS MAXLEN); the states in
        scan order, the first that holds it."""
        redis = self.store.redis
        for state in self.states:
            key, kind = STATE_KEYS[state]
            index: int | None = None
            if kind == "zset":
                rank_at: Any = await redis.zrevrank(self.queue.key(key), job_id)
                index = None if rank_at is None else int(rank_at)
                self.calls += 1
            else:
                for rank in (1, -1):
                    at: Any = await redis.lpos(
                        self.queue.key(key), job_id, rank=rank, maxlen=LIST_LOOKUP_BOUND
                    )
                    self.calls += 1
                    if at is not None:
                        index = int(at)
                        break
            if index is not None:
                looked, _, jobs = await self.page(state, int(index), 1)
                self.looked += looked
                return [j for j in jobs if j.job_id == job_id]
        if await redis.exists(self.queue.key(job_id)):
            self.calls += 1
            lists = [s for s in self.states if STATE_KEYS[s][1] == "list"]
            self.note = (
                f"job {job_id} exists but is in none of the sorted sets searched, nor within "
                f"{LIST_LOOKUP_BOUND:,} jobs of either end of the "
                f"{'/'.join(lists) or 'list'} lists: deeper in a long list, or in another "
                f"state; `job show {self.queue.shown} {job_id}` reads it"
            )
        return []


def _path_value(data: Any, path: Sequence[str]) -> tuple[bool, Any]:
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return False, None
    return True, data


def _equals(found: Any, wanted: str) -> bool:
    """A payload value against what was typed: numbers as numbers (`5` matches 5 and 5.0),
    true/false/null as JSON, anything else as the string it is (`"5"` also matches "5")."""
    if isinstance(found, bool) or found is None:
        return json.dumps(found) == wanted
    if isinstance(found, int | float):
        try:
            return float(wanted) == float(found)
        except ValueError:
            return False
    if isinstance(found, str):
        return found == wanted or found == wanted.strip('"')
    return json.dumps(found, separators=(",", ":")) == wanted


def _data_matches(jobs: Sequence[ScannedJob], flt: JobFilter) -> tuple[list[bool], int]:
    """--data / --data-path over a page (run in a thread: it parses JSON). Returns the
    yes/no per job and how many payloads were too large to look at."""
    out, too_large = [], 0
    path = flt.data_path[0].split(".") if flt.data_path else None
    for job in jobs:
        if job.data_len > DATA_BYTES:
            too_large += 1
            out.append(False)
            continue
        ok = True
        if flt.data_text is not None:
            ok = flt.data_text in job.data
        if ok and path is not None and flt.data_path is not None:
            try:
                has, value = _path_value(json.loads(job.data or "null"), path)
            except ValueError:
                has, value = False, None
            ok = has and _equals(value, flt.data_path[1])
        out.append(ok)
    return out, too_large


def _cluster_keys(jobs: Sequence[ScannedJob]) -> list[str]:
    return [cluster_key(normalise(j.reason, j.frame)) for j in jobs]


async def _matching(
    jobs: list[ScannedJob], flt: JobFilter, now_ms: int
) -> tuple[list[ScannedJob], int]:
    """The jobs of a page that meet every condition, cheapest test first; and how many
    payloads were too large to test."""
    keep = [
        j
        for j in jobs
        if (flt.name is None or j.name == flt.name)
        and (flt.job_id is None or j.job_id == flt.job_id)
        and (
            flt.older_than_ms is None
            or (j.timestamp is not None and now_ms - j.timestamp >= flt.older_than_ms)
        )
    ]
    too_large = 0
    if keep and flt.needs_data:
        hits, too_large = await asyncio.to_thread(_data_matches, keep, flt)
        keep = [j for j, hit in zip(keep, hits, strict=True) if hit]
    if keep and flt.cluster is not None:
        keys = await asyncio.to_thread(_cluster_keys, keep)
        keep = [j for j, key in zip(keep, keys, strict=True) if key == flt.cluster]
    if keep and flt.reason is not None:
        hits = await flt.reason.matching([j.reason for j in keep])
        keep = [j for j, hit in zip(keep, hits, strict=True) if hit]
    return keep, too_large


def _stats(scan: Scan, matched: int, too_large: int, *, by_limit: bool) -> ScanStats:
    early = not scan.finished
    return ScanStats(
        states=list(scan.states),
        looked=scan.looked,
        total=max(scan.total, scan.looked),
        matched=matched,
        calls=scan.calls,
        stopped_early=early,
        stopped_by=("limit" if by_limit else "scan") if early else None,
        too_large=too_large,
    )


async def select(
    store: QueueStore,
    queue: QueueRef,
    flt: JobFilter,
    *,
    now_ms: int | None = None,
    page_size: int = 0,
) -> tuple[list[ScannedJob], ScanStats, Scan]:
    """The jobs `flt` selects, newest first, at most `flt.limit`, within `flt.scan` jobs
    looked at. A cluster key selects failed jobs only."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    states = ("failed",) if flt.cluster is not None else check_states(flt.states)
    if flt.cluster is not None and flt.states and "failed" not in flt.states:
        raise UsageError("--cluster selects failed jobs; it cannot be used with other --state")
    scan = Scan(
        store,
        queue,
        states,
        bound=min(flt.scan, MAX_SCAN),
        want_data=flt.needs_data,
        want_frame=flt.cluster is not None,
        page_size=page_size,
    )
    await scan.totals()
    found: list[ScannedJob] = []
    too_large = 0
    if flt.job_id is not None:
        jobs = await scan.at_index(flt.job_id)
        found, too_large = await _matching(jobs, flt, now)
        scan.finished = True
        return found[: flt.limit], _stats(scan, len(found), too_large, by_limit=False), scan
    by_limit = False
    async for page in scan.pages():
        hits, large = await _matching(page, flt, now)
        too_large += large
        found += hits
        if len(found) >= flt.limit:
            by_limit = True
            break
    return found[: flt.limit], _stats(scan, len(found), too_large, by_limit=by_limit), scan


async def find(
    store: QueueStore, queue: QueueRef, flt: JobFilter, *, now_ms: int | None = None
) -> FindResult:
    found, stats, scan = await select(store, queue, flt, now_ms=now_ms)
    return FindResult(
        name=queue.name,
        prefix=queue.prefix,
        label=queue.shown,
        jobs=[j.found() for j in found],
        scan=stats,
        note=scan.note,
    )


def _add_page(clusters: ClusterSet, page: Sequence[ScannedJob]) -> None:
    for job in page:
        clusters.add(job.job_id, job.name, job.reason, job.finished_on, job.frame)


async def failures(
    store: QueueStore,
    queue: QueueRef,
    *,
    scan: int = FAILURES_SCAN,
    top: int = 20,
    page_size: int = 0,
) -> tuple[FailureReport, Scan]:
    """The newest `scan` failed jobs grouped by normalised reason (failure_clusters),
    largest first, the first `top` of them; normalising runs in a thread, page by page."""
    run = Scan(
        store,
        queue,
        ("failed",),
        bound=min(scan, MAX_SCAN),
        want_frame=True,
        page_size=page_size,
    )
    await run.totals()
    clusters = ClusterSet()
    async for page in run.pages():
        await asyncio.to_thread(_add_page, clusters, page)
    ranked = clusters.ranked()
    report = FailureReport(
        name=queue.name,
        prefix=queue.prefix,
        label=queue.shown,
        clusters=[
            FailureCluster(
                key=c.key,
                text=c.text,
                count=c.count,
                first_seen_ms=c.first_seen_ms,
                last_seen_ms=c.last_seen_ms,
                names=[Tally(key=n, count=k) for n, k in c.names.most_common(5)],
                sample_id=c.sample_id,
                sample_reason=c.sample_reason.splitlines()[0][:300] if c.sample_reason else "",
            )
            for c in ranked[:top]
        ],
        scan=_stats(run, clusters.jobs, 0, by_limit=False),
    )
    return report, run
