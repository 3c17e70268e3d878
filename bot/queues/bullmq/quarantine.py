"""`quarantine`: move one job, or failed jobs matching a regex, into the queue's DLQ.

Each job moves inside one script call (lua/quarantine.lua), so a crash at any point leaves
every job wholly in the source or wholly in the DLQ. Bulk moves go in small batches so no
single call blocks Redis for long; the user's regex runs on RE2 off the event loop
(bot/patterns.py).

A waiting (or paused) job sits in a list, and a list can only be searched entry by entry.
The script looks at most LIST_SCAN_BOUND entries from the oldest end (where poison jobs
are: workers take from there) and from the newest end, and removes the job from the end
that found it, so a quarantine costs the job's depth from the nearer end. A job deeper than
that from both ends of a longer list is refused, with its list's length, the Redis time a
whole-list search would take and the way to accept it (`deep=True`, the command's --deep).
Why refuse rather than move it in bounded steps: Redis has no bounded way to take an entry
out of the middle of a list. LREM and LPOS scan from an end; an index found by a bounded
read goes stale as workers pop and producers push; and anything that takes the job out of
`wait` before its final removal (a tombstone, a holding list) leaves it where npm bullmq
cannot see it, or a worker could still pop it after we said it was quarantined. One call
whose cost the operator chose, or waiting for the job to near the oldest end as workers
drain the queue, are the honest options.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from bot.errors import OperationFailed
from bot.patterns import MATCH_CHARS, PatternTooSlow, UserPattern
from bot.queues.bullmq.batching import CallSizer, ScriptCall, run_round
from bot.queues.bullmq.store import Checkpoint, QueueStore, no_checkpoint
from bot.queues.keys import QueueRef
from bot.queues.models import BulkQuarantineResult, JobMove, MatchPreview
from bot.text import plural

MOVABLE_STATES = ("waiting", "paused", "delayed", "prioritized", "failed")
BATCH_SIZE = 100
"""Jobs per bulk call to start with; then as measured (batching.CallSizer), at most
BATCH_MAX. A failed job moves in 6-7 Redis commands (lua/quarantine_failed.lua), ~25 us of
Redis time (measured: 100,000 failed jobs beside 1,000,000 waiting, Redis 7 on 2 cores)."""
BATCH_MAX = 1000
PAGE_SIZE = 300
"""Failed jobs whose reasons one call of lua/failed_page.lua reads: ~1.5 ms of Redis time
(1,000 a call measured 4-7 ms at 100,000 failed, too near the 10 ms bound on a busy
machine). A bulk round moves one page's matches."""
REASON_BYTES = 4 * MATCH_CHARS
"""Bytes of each reason a page returns: the client matches only the first MATCH_CHARS
characters, and a UTF-8 character is at most 4 bytes."""
PAGE_BYTES = 256_000
"""Bytes of reasons after which a page ends early, so a page of megabyte-long reasons is as
short a call as any (~32 reasons of REASON_BYTES)."""
ROUND_JOBS = 1000
"""Jobs a round of a match-all move covers (it reads no pages)."""
READ_AHEAD = 2
"""Pages of matches the reader may have handed to the mover before it waits."""
IN_FLIGHT = 2
"""Rounds of move calls sent and not yet answered: while Redis runs one, the client tallies
the one before and sends the next, so Redis never waits for the client."""
MOVED = "moved:failed"
_MOVED = JobMove(job_id="-", moved=True, outcome=MOVED, from_state="failed")
MATCH_ALL = frozenset({"", "^", ".*", "^.*", ".*?", "(?s).*", "(?s)^.*"})

LIST_SCAN_BOUND = 20_000
"""How many entries of a list a single-job quarantine looks at from each end.

Finding a job in a Redis list costs one comparison per entry passed: 30-36 ns measured
(LPOS and LREM, numeric and uuid ids, a 1,000,000-entry list, Redis 7 on 2 cores). The
worst bounded case compares 3x this many entries in one wait list (the tail, then the head,
then LREM from the head), ~2.4 ms at 40 ns, and 5x when a paused queue also has jobs in
`wait` (plus the active list, a handful of jobs): under the 10 ms no call may exceed, with
room for a noisy machine."""

NS_PER_LIST_ENTRY = 40
"""Redis time per list entry compared, rounded up from the measurement above; it prices a
search through the middle of a long list in the reply that refuses it."""


def _problem(queue: QueueRef, dlq: str, job_id: str, code: str) -> str:
    if code == "missing":
        return f"job {job_id} not found in queue '{queue.shown}'"
    if code == "active":
        return (
            f"job {job_id} in '{queue.shown}' is active: a worker holds its lock. Let it finish or "
            "fail, then quarantine it"
        )
    if code.startswith("dlq-has:"):
        return f"'{dlq}' already holds a job with id {job_id}; nothing was moved"
    if code.startswith("flow:"):
        return (
            f"job {job_id} in '{queue.shown}' belongs to a flow (parent {code[5:]}); moving it "
            "would strand its parent"
        )
    if code.startswith("state:not "):
        return f"job {job_id} in '{queue.shown}' is no longer {code[10:]}; it was left where it is"
    if code.startswith("state:"):
        state = code[6:]
        return (
            f"job {job_id} in '{queue.shown}' is {state}; only "
            f"{', '.join(MOVABLE_STATES)} jobs can be quarantined"
        )
    return f"job {job_id} in '{queue.shown}': unexpected outcome {code}"


async def move_by_ids(
    store: QueueStore,
    queue: QueueRef,
    job_ids: Sequence[str],
    *,
    reason: str,
    actor: str,
    states: Sequence[str],
    scan_bound: int = LIST_SCAN_BOUND,
    deep: bool = False,
) -> list[JobMove]:
    """Quarantine the jobs `job_ids` names, each atomically (lua/quarantine.lua), in one
    call: the one way queueops moves jobs it already knows the ids of to the DLQ (a single
    quarantine, and the filtered actions of filtered.py)."""
    src, dlq = queue, store.dlq(queue)
    keys = [
        src.key(s)
        for s in (
            "wait",
            "paused",
            "active",
            "delayed",
            "prioritized",
            "failed",
            "completed",
            "waiting-children",
            "meta",
            "events",
        )
    ] + [dlq.key("failed"), dlq.key("meta"), dlq.key("events")]
    args: list[str | int] = [
        src.base,
        dlq.base,
        int(time.time() * 1000),
        reason,
        actor,
        queue.name,
        ",".join(states),
        scan_bound,
        "deep" if deep else "bounded",
        *job_ids,
    ]
    outcomes: list[str] = await store.scripts.quarantine(keys=keys, args=args)
    moves = []
    for job_id, code in zip(job_ids, outcomes, strict=True):
        if code.startswith("moved:"):
            moves.append(_moved(job_id, code))
        elif code.startswith("deep:"):
            moves.append(_too_deep(queue, job_id, code, scan_bound))
        else:
            problem = _problem(queue, dlq.shown, job_id, code)
            moves.append(JobMove(job_id=job_id, moved=False, outcome=code, problem=problem))
    return moves


def _moved(job_id: str, code: str) -> JobMove:
    """'moved:<state>', or for a list 'moved:<state>:<end>:<depth>:<scanned>'."""
    state, *where = code[6:].split(":")
    move = JobMove(job_id=job_id, moved=True, outcome=code, from_state=state)
    if len(where) == 3:
        move = move.model_copy(
            update={"list_end": where[0], "depth": int(where[1]), "scanned": int(where[2])}
        )
    return move


def _too_deep(queue: QueueRef, job_id: str, code: str, bound: int) -> JobMove:
    """'deep:<list>:<length>': not within `bound` entries of either end; nothing moved."""
    _, name, length_text = code.split(":")
    length = int(length_text)
    estimated_ms = round(length * NS_PER_LIST_ENTRY / 1_000_000, 1)
    problem = (
        f"job {job_id} is not within {bound:,} jobs of either end of '{queue.shown}''s {name} list "
        f"({length:,} jobs), so it is somewhere in the middle; finding and moving it means "
        f"one Redis call comparing up to {length:,} entries, ~{estimated_ms:g} ms during "
        "which every worker on this Redis waits. Nothing was moved: add --deep to accept "
        "that, or quarantine it later, once workers have brought it nearer the oldest end"
    )
    return JobMove(
        job_id=job_id,
        moved=False,
        outcome=code,
        problem=problem,
        list_name=name,
        list_length=length,
        scan_bound=bound,
        estimated_ms=estimated_ms,
    )


async def quarantine_job(
    store: QueueStore,
    queue: QueueRef,
    job_id: str,
    *,
    reason: str,
    actor: str,
    scan_bound: int = LIST_SCAN_BOUND,
    deep: bool = False,
) -> JobMove:
    """Move one job; a problem (active, missing, wrong state, too deep in a long list
    without `deep`) comes back in `problem`. `scan_bound` is LIST_SCAN_BOUND but in tests."""
    [move] = await move_by_ids(
        store,
        queue,
        [job_id],
        reason=reason,
        actor=actor,
        states=MOVABLE_STATES,
        scan_bound=scan_bound,
        deep=deep,
    )
    if move.outcome == "missing":
        dlq = store.dlq(queue)
        if await store.redis.zscore(dlq.key("failed"), job_id) is not None:
            move = move.model_copy(
                update={"problem": f"job {job_id} is already quarantined in '{dlq.shown}'"}
            )
    return move


class BulkMoveStopped(OperationFailed):
    """A bulk move cut short (Redis went away, the pattern was too slow) part of the way.

    `partial` is what this run did before it stopped: every job it reports as moved is in
    the DLQ, every other one still in the queue (each batch is one atomic script)."""

    def __init__(
        self, partial: BulkQuarantineResult, cause: Exception, *, unconfirmed: int = 0
    ) -> None:
        self.partial = partial
        self.cause = cause
        self.unconfirmed = unconfirmed
        first_line = (str(cause).splitlines() or [type(cause).__name__])[0]
        super().__init__(
            f"stopped after moving {plural(len(partial.moved), 'failed job')}"
            f"{self.maybe_more} from "
            f"'{partial.queue}' to '{partial.dlq}': {first_line}"
        )

    @property
    def maybe_more(self) -> str:
        """The "(and up to N more …)" part, for calls Redis may have run but never answered
        (the connection went in between): their jobs are in the DLQ or still in the queue,
        each whole; the bound is said, not a guess. Empty when every call was answered."""
        if not self.unconfirmed:
            return ""
        return (
            f" (and up to {self.unconfirmed} more, in calls whose answer was lost or that "
            "found them gone: `dlq list` shows them)"
        )


@dataclass(frozen=True)
class FailedEntry:
    job_id: str
    reason: str
    score: str


def _page_call(
    store: QueueStore, queue: QueueRef, after: FailedEntry | None, size: int
) -> ScriptCall:
    anchor, score = (after.job_id, after.score) if after else ("", "0")
    return ScriptCall(
        store.scripts.failed_page,
        [queue.key("failed")],
        [queue.base, anchor, score, size, REASON_BYTES, PAGE_BYTES],
    )


def _page(answer: list[str]) -> list[FailedEntry]:
    """lua/failed_page.lua's answer: ids, reasons and scores, each a JSON array."""
    if not answer:
        return []
    ids, reasons, scores = (json.loads(part) for part in answer)
    return [
        FailedEntry(str(i), str(r), str(s)) for i, r, s in zip(ids, reasons, scores, strict=True)
    ]


async def failed_page(
    store: QueueStore, queue: QueueRef, after: FailedEntry | None, size: int = PAGE_SIZE
) -> list[FailedEntry]:
    """One page of the failed set, oldest first, starting after `after` (a cursor that
    survives jobs being removed in front of it; see lua/failed_page.lua), in one call."""
    call = _page_call(store, queue, after, size)
    return _page(await call.script(keys=call.keys, args=call.args))


def matches_everything(pattern: UserPattern) -> bool:
    """Whether the pattern is one of the spellings of "every failed job" (`.*`, `^`, ...):
    then nothing needs reading to know a job matches. Only these exact spellings: proving
    that some other regex matches every text is more than a bulk move should guess at."""
    return pattern.source in MATCH_ALL


async def preview_matching(
    store: QueueStore, queue: QueueRef, pattern: UserPattern, *, limit: int, sample: int = 15
) -> MatchPreview:
    """The confirmation's preview, cheaply: a match-all pattern is counted with ZCARD (and
    one short page for the sample); any other pattern is matched page by page (bounded
    calls, RE2 off the event loop), stopping at `limit` matches. Nothing moves."""
    if matches_everything(pattern):
        first = await failed_page(store, queue, None, sample)
        total = int(await store.redis.zcard(queue.key("failed")))
        shown = [(e.job_id, e.reason) for e in first]
        return MatchPreview(min(total, limit), 0, shown[:limit], counted_without_reading=True)
    count = read = 0
    shown = []
    after: FailedEntry | None = None
    while count < limit:
        page = await failed_page(store, queue, after)
        if not page:
            break
        read += len(page)
        after = page[-1]
        hits = await pattern.matching([e.reason for e in page])
        for entry, hit in zip(page, hits, strict=True):
            if hit and count < limit:
                count += 1
                if len(shown) < sample:
                    shown.append((entry.job_id, entry.reason))
    return MatchPreview(count, read, shown, counted_without_reading=False)


async def find_matching(
    store: QueueStore, queue: QueueRef, pattern: UserPattern, *, limit: int
) -> tuple[list[tuple[str, str]], int]:
    """Failed jobs whose reason matches, oldest first, at most `limit`; and how many were read.
    Nothing moves."""
    found: list[tuple[str, str]] = []
    read = 0
    after: FailedEntry | None = None
    while len(found) < limit:
        page = await failed_page(store, queue, after)
        if not page:
            break
        read += len(page)
        after = page[-1]
        hits = await pattern.matching([e.reason for e in page])
        found += [(e.job_id, e.reason) for e, hit in zip(page, hits, strict=True) if hit]
    return found[:limit], read


@dataclass
class _Round:
    """A round of move calls sent and not yet tallied."""

    task: asyncio.Task[list[Any]]
    sent: list[ScriptCall]
    jobs: int
    """Jobs it asks for: the reader's matches, or a match-all's oldest."""
    ends_item: bool = False
    """Its jobs are the last of one page's matches (the reader's handoff.task_done)."""

    @property
    def calls(self) -> int:
        return len(self.sent)


class _BulkRun:
    """One bulk quarantine: its script calls, rounds and tally."""

    def __init__(
        self,
        store: QueueStore,
        queue: QueueRef,
        pattern: UserPattern,
        *,
        limit: int,
        reason: str,
        actor: str,
        sizer: CallSizer,
        checkpoint: Checkpoint,
    ) -> None:
        self.store, self.queue, self.pattern, self.limit = store, queue, pattern, limit
        self.sizer, self.checkpoint = sizer, checkpoint
        src, dlq = queue, store.dlq(queue)
        self.keys = [
            src.key("failed"),
            src.key("meta"),
            src.key("events"),
            dlq.key("failed"),
            dlq.key("meta"),
            dlq.key("events"),
        ]
        self.head: list[str | int] = [src.base, dlq.base, 0, reason, actor, queue.name]
        self.moved: list[JobMove] = []
        self.unmovable: dict[str, JobMove] = {}
        self.scanned = self.matched = self.batches = self.rounds = 0
        self.handed = 0
        """Matched ids the reader has handed to the mover that it has not tallied yet."""
        self.redis_s = 0.0
        """Redis time the move calls took by their own account (the sizer's measure)."""
        self.unconfirmed = 0
        """Jobs asked for by calls whose answer never came (Redis went away meanwhile)."""
        self.missing = 0
        """Jobs gone from `failed` when a call came for them: another run's, or (when a
        lost answer made redis-py send a call again) this run's own."""
        self.literal_run_key: str | None = None
        """Set for a plain-text pattern, matched inside the move script (move_literal)."""

    def result(self) -> BulkQuarantineResult:
        return BulkQuarantineResult(
            queue=self.queue.shown,
            dlq=self.store.dlq(self.queue).shown,
            pattern=self.pattern.source,
            scanned=self.scanned,
            matched=self.matched,
            moved=self.moved,
            skipped=list(self.unmovable.values()),
            batches=self.batches,
        )

    def _call(self, *names: str | int, keys: Sequence[str] | None = None) -> ScriptCall:
        self.head[2] = int(time.time() * 1000)
        return ScriptCall(
            self.store.scripts.quarantine_failed, keys or self.keys, [*self.head, *names]
        )

    def _tally(self, answer: list[Any], *, seen_by_page: bool) -> int:
        """Count one call's outcomes (see lua/quarantine_failed.lua); returns how many
        entries it looked at."""
        looked, moved_json, took_us, nomatch, *others = answer
        self.redis_s += int(took_us) / 1_000_000
        moved_ids = [str(i) for i in json.loads(moved_json)]
        # Copies of one validated move: 100,000 moves must not cost a validation each on
        # the event loop (model_copy is a few times cheaper than even model_construct).
        self.moved += [_MOVED.model_copy(update={"job_id": i}) for i in moved_ids]
        fresh = len(moved_ids)
        dlq = self.store.dlq(self.queue).shown
        for job_id, code in zip(others[0::2], others[1::2], strict=True):
            # "missing": another run (or a retry) took it between our read and our move;
            # or this run did, in a call whose answer was lost and that redis-py sent again.
            if code == "missing":
                self.missing += 1
                continue
            if job_id in self.unmovable:
                continue
            problem = (
                f"'{self.queue.shown}' lists failed job {job_id} but holds no data for it; "
                "left as it is"
                if code == "no-hash"
                else _problem(self.queue, dlq, job_id, code)
            )
            self.unmovable[job_id] = JobMove(
                job_id=job_id, moved=False, outcome=code, problem=problem
            )
            fresh += 1
        if self.literal_run_key is not None:  # matched inside Redis: it counted
            self.scanned += int(looked)
            self.matched += int(looked) - int(nomatch)
        elif not seen_by_page:
            self.scanned += fresh
            self.matched += fresh
        return int(looked)

    def _asked(self, call: ScriptCall) -> int:
        """How many jobs an "oldest" or "literal" call asks to look at."""
        return int(call.args[-3] if self.literal_run_key is not None else call.args[-1])

    def _send(self, calls: list[ScriptCall], *, jobs: int, ends_item: bool = False) -> _Round:
        """Start a round of move calls asking for `jobs` jobs."""
        task = asyncio.create_task(run_round(self.store.redis, calls))
        return _Round(task, calls, jobs, ends_item)

    def _count(self, sent: _Round, answers: list[Any], *, paged: bool) -> int:
        """Tally a round's answers (even when one call failed); returns entries looked at.
        `paged`: its jobs came from pages already counted as scanned and matched."""
        looked = 0
        for call, answer in zip(sent.sent, answers, strict=True):
            if not isinstance(answer, Exception):
                looked += self._tally(answer, seen_by_page=paged)
            else:  # sent: whether Redis ran it is unknown
                self.unconfirmed += sent.jobs if paged else self._asked(call)
        self.batches += sent.calls
        if paged:
            self.handed -= sent.jobs
        return looked

    async def _finish(self, sent: _Round, *, paged: bool) -> list[Any]:
        """Wait for the oldest round in flight, tally it, raise its first failure, then
        pass the checkpoint. The sizer goes by the Redis time the calls report: with
        rounds in flight, the time the client sees includes other calls' turns."""
        try:
            answers = await sent.task
        except Exception:
            self.unconfirmed += sent.jobs  # sent; whether Redis ran it is unknown
            raise
        before = self.redis_s
        looked = self._count(sent, answers, paged=paged)
        self.sizer.observe(looked, sent.calls, self.redis_s - before)
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        self.rounds += 1
        await self.checkpoint(f"round-{self.rounds}")
        return answers

    async def _settle(self, in_flight: deque[_Round], *, paged: bool) -> None:
        """After a failure: wait for the rounds still in flight and count what they moved,
        so the error says how many moved; they may have failed too (Redis went away)."""
        while in_flight:
            sent = in_flight.popleft()
            try:
                self._count(sent, await sent.task, paged=paged)
            except Exception:
                self.unconfirmed += sent.jobs

    def _split(self, total: int) -> list[int]:
        size = max(1, self.sizer.size)
        return [min(size, total - start) for start in range(0, total, size)]

    async def move_oldest(self, round_jobs: int) -> None:
        """A match-all pattern: each call takes the oldest failed jobs after those this run
        could not move (each call sees what those before it left)."""

        def next_round(in_flight: deque[_Round]) -> list[ScriptCall]:
            room = self.limit - len(self.moved) - sum(r.jobs for r in in_flight)
            if room <= 0:
                return []
            skip = len(self.unmovable)
            return [self._call("oldest", skip, n) for n in self._split(min(round_jobs, room))]

        await self._run_rounds(next_round)

    async def move_literal(self, literal: str, round_jobs: int) -> None:
        """A plain-text pattern: the move script matches it in the HMGET it reads each job
        with anyway, so no page of reasons is read (on 100,000 failed that was an eighth of
        Redis' time) and nothing is matched on the client. The run's place lives in Redis
        (KEYS[7]), so rounds of pipelined calls continue each other exactly; a call that
        reaches the limit looks at fewer jobs than it asked for, which ends the run."""
        run_key = self.queue.key(f"qo-bulk:{uuid.uuid4().hex}")
        self.literal_run_key = run_key
        keys = [*self.keys, run_key]

        def next_round(in_flight: deque[_Round]) -> list[ScriptCall]:
            return [
                self._call("literal", literal, n, self.limit, MATCH_CHARS, keys=keys)
                for n in self._split(round_jobs)
            ]

        try:
            await self._run_rounds(next_round)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await self.store.redis.delete(run_key)

    async def _run_rounds(self, next_round: Callable[[deque[_Round]], list[ScriptCall]]) -> None:
        """Keep IN_FLIGHT rounds of calls in flight, each made by `next_round` (given the
        rounds in flight; an empty list: nothing to send until one comes back). The run ends
        once a call looked at fewer jobs than it asked for and every round is back."""
        in_flight: deque[_Round] = deque()
        try:
            exhausted = False
            while True:
                if not exhausted and len(in_flight) < IN_FLIGHT:
                    calls = next_round(in_flight)
                    if calls:
                        jobs = sum(self._asked(call) for call in calls)
                        in_flight.append(self._send(calls, jobs=jobs))
                        continue
                if not in_flight:
                    return
                sent = in_flight.popleft()
                asked = [self._asked(call) for call in sent.sent]
                answers = await self._finish(sent, paged=False)
                exhausted |= any(int(a[0]) < n for a, n in zip(answers, asked, strict=True))
        except Exception:
            await self._settle(in_flight, paged=False)
            raise
        finally:
            for sent in in_flight:
                sent.task.cancel()

    async def move_matching(self, page_size: int) -> None:
        """Any other pattern: a reader reads pages of reasons and matches them off the loop
        while the mover moves the matches of the pages before, IN_FLIGHT rounds at a time,
        each on its own connection from the pool: Redis runs moves while the client reads,
        matches and tallies (one after the other, the client's share was a third of the
        run). A round here is one call: Redis runs a client's pipelined calls back to back,
        so a round of several would hold the reader's next page behind all of them and
        starve the mover. The reader stays at most READ_AHEAD pages ahead."""
        handoff: asyncio.Queue[list[str] | Exception | None] = asyncio.Queue(READ_AHEAD)
        reader = asyncio.create_task(self._read_matches(handoff, page_size))
        in_flight: deque[_Round] = deque()

        async def finish_oldest() -> None:
            sent = in_flight.popleft()
            await self._finish(sent, paged=True)
            if sent.ends_item:
                handoff.task_done()  # the reader may be waiting for this page's tally

        try:
            while True:
                # The oldest round first when as many are in flight as allowed, or when
                # nothing is waiting (the reader may be waiting for this tally: join()).
                if in_flight and (len(in_flight) >= IN_FLIGHT or handoff.empty()):
                    await finish_oldest()
                    continue
                item = await handoff.get()
                if item is None:
                    while in_flight:
                        await finish_oldest()
                    return
                if isinstance(item, Exception):
                    raise item
                first = 0
                for n in self._split(len(item)):
                    if len(in_flight) >= IN_FLIGHT:
                        await finish_oldest()
                    call = self._call("ids", json.dumps(item[first : first + n]))
                    first += n
                    in_flight.append(self._send([call], jobs=n, ends_item=first == len(item)))
        except Exception:
            await self._settle(in_flight, paged=True)
            raise
        finally:
            for sent in in_flight:
                sent.task.cancel()
            # The reader only reads, so it may stop anywhere.
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read_matches(
        self, handoff: asyncio.Queue[list[str] | Exception | None], page_size: int
    ) -> None:
        """Read pages from the oldest failed job on, hand each page's matches to the mover,
        then None; a failure is handed over too, after the matches before it (the mover
        moves those first, so what it reports moved is all that moved)."""
        after: FailedEntry | None = None
        try:
            while True:
                room = self.limit - len(self.moved) - self.handed
                if room <= 0:
                    # Enough handed over to reach the limit; but some may turn out taken by
                    # a concurrent run or unmovable: wait for the mover's tally to know.
                    await handoff.join()
                    room = self.limit - len(self.moved)
                    if room <= 0:
                        break
                page = await failed_page(self.store, self.queue, after, page_size)
                if not page:
                    break
                self.scanned += len(page)
                hits = await self.pattern.matching([e.reason for e in page])
                matched = [e for e, hit in zip(page, hits, strict=True) if hit]
                self.matched += len(matched)
                taken = matched[:room]
                # Over the limit, the next page starts after the last job taken, not the page.
                after = taken[-1] if len(matched) > room else page[-1]
                if taken:
                    self.handed += len(taken)
                    await handoff.put([e.job_id for e in taken])
        except (RedisError, OSError, PatternTooSlow) as err:
            await handoff.put(err)
            return
        await handoff.put(None)


async def quarantine_matching(
    store: QueueStore,
    queue: QueueRef,
    pattern: UserPattern,
    *,
    limit: int,
    reason: str,
    actor: str,
    batch_size: int | None = None,
    page_size: int = PAGE_SIZE,
    round_jobs: int = ROUND_JOBS,
    checkpoint: Checkpoint = no_checkpoint,
) -> BulkQuarantineResult:
    """Move up to `limit` failed jobs whose failedReason matches `pattern`, oldest first.

    Each call of lua/quarantine_failed.lua moves a batch atomically job by job; a round
    sends the calls for one page's matches (`page_size` reasons read by lua/failed_page.lua
    a call) in one pipeline while the next pages are read and matched, and the jobs per
    call follow the measured time (batching.CallSizer; `batch_size` fixes it). A match-all
    pattern reads no reasons at all: its rounds take `round_jobs` of the oldest. Up to
    IN_FLIGHT rounds are sent before the first is answered. The scan follows a cursor to
    the newest end, so a job that matched and was in the set all along is moved by this run
    or by whoever took it first (a second bulk run at the same time): when this returns, no
    match is left behind within `limit`.
    Jobs another run took first are not this run's and are not reported. Cut short by
    Redis or the pattern's time bound, it raises BulkMoveStopped saying how many it moved.
    """
    run = _BulkRun(
        store,
        queue,
        pattern,
        limit=limit,
        reason=reason,
        actor=actor,
        sizer=CallSizer(initial=BATCH_SIZE, low=10, high=BATCH_MAX, fixed=batch_size),
        checkpoint=checkpoint,
    )
    try:
        if matches_everything(pattern):
            await run.move_oldest(round_jobs)
        elif (literal := pattern.literal) is not None:
            await run.move_literal(literal, round_jobs)
        else:
            await run.move_matching(page_size)
    except (RedisError, OSError, PatternTooSlow) as err:
        unconfirmed = run.unconfirmed + run.missing
        raise BulkMoveStopped(run.result(), err, unconfirmed=unconfirmed) from err
    return run.result()
