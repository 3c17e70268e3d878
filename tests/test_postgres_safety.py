"""PostgresBackend's safety claim, on a real PostgreSQL: "every change is one transaction; a
crash mid-batch leaves each row either untouched or fully quarantined (row failed + DLQ row
present), never a DLQ row without the original marked, never a marked row without its DLQ
row."

Why each test is here:

* a SIGKILL between two statements of a batch (a subprocess, tests/crash_pg_quarantine.py)
  must leave the earlier batches complete and the killed one untouched, and a rerun must
  finish the job without quarantining anything twice; the same for a DLQ replay;
* a connection killed server-side (pg_terminate_backend) mid-batch must surface as one
  QueueOpsError line without the password, leave the same invariant, and not poison the
  pool for the next command;
* workers claiming rows with FOR UPDATE SKIP LOCKED while a bulk quarantine runs must never
  get a row the quarantine also moved (processed and in the DLQ), and nothing may be lost;
* two bot replicas running the same quarantine (and then the same replay) at once must
  split the rows, never move one twice.

No mocks: the point is what PostgreSQL's locking and transactions really do.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from pg_fixtures import load_seed_schema

from bot.config import load_settings
from bot.errors import QueueOpsError
from bot.patterns import compile_user_pattern
from bot.queues.postgres.backend import PostgresBackend

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRIPT = HERE / "crash_pg_quarantine.py"
Conn = psycopg.AsyncConnection[Any]
QUARANTINE_KEYS = {
    "reason",
    "original_status",
    "original_error",
    "quarantined_by",
    "quarantined_at",
}


# --- helpers -----------------------------------------------------------------------------


def make_backend(url: str) -> PostgresBackend:
    backend = PostgresBackend.from_settings(load_settings(queue_jobs_database_url=url))
    assert backend is not None
    return backend


async def prepared(conn: Conn, url: str) -> PostgresBackend:
    """The seed table plus the DLQ table (with replayed_at) as `db init-dlq` creates it."""
    await load_seed_schema(conn)
    backend = make_backend(url)
    await backend.init_dlq()
    return backend


async def seed_failed(conn: Conn, n: int, *, spread: str = "ordered") -> None:
    """`n` failed rows whose error matches "boom", payload {"n": i}. "ordered": row i is the
    i-th newest (updated_at now - i s), so the quarantine's batches (newest first) are
    rows 1-50, 51-100, ...; "random": updated_at and run_after shuffled."""
    updated = (
        "now() - g * interval '1 second'"
        if spread == "ordered"
        else "now() - random() * interval '1 day'"
    )
    await conn.execute(
        "INSERT INTO queue_jobs (type, status, payload, run_after, updated_at, attempts,"
        " last_error) SELECT 'email', 'failed', jsonb_build_object('n', g),"
        f" now() - random() * interval '1 hour', {updated}, 3,"
        " jsonb_build_object('message', 'boom ' || g) FROM generate_series(1, %s) g",
        (n,),
    )


async def seed_pending(conn: Conn, n: int) -> None:
    await conn.execute(
        "INSERT INTO queue_jobs (type, status, payload, run_after)"
        " SELECT 'email', 'pending', jsonb_build_object('p', g),"
        " now() - random() * interval '1 hour' FROM generate_series(1, %s) g",
        (n,),
    )


async def job_rows(conn: Conn) -> dict[str, tuple[Any, ...]]:
    """id -> (n, status, last_error, updated_at, DLQ rows waiting, DLQ rows in all)."""
    cur = await conn.execute(
        "SELECT j.id::text, (j.payload->>'n')::int, j.status, j.last_error, j.updated_at,"
        " (SELECT count(*) FROM queue_jobs_dlq d"
        "   WHERE d.original_job_id = j.id AND d.replayed_at IS NULL),"
        " (SELECT count(*) FROM queue_jobs_dlq d WHERE d.original_job_id = j.id)"
        " FROM queue_jobs j"
    )
    return {r[0]: tuple(r[1:]) for r in await cur.fetchall()}


async def scalar(conn: Conn, query: str, params: Any = None) -> Any:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


def is_quarantined(row: tuple[Any, ...], before: tuple[Any, ...] | None = None) -> bool:
    """Failed, marked with the runbook's object, exactly one DLQ row (waiting); the mark
    keeps what the row said before."""
    _, status, error, _, waiting, total = row
    if not (status == "failed" and isinstance(error, dict) and "original_status" in error):
        return False
    assert set(error) == QUARANTINE_KEYS, error
    assert error["original_status"] == "failed"
    if before is not None:
        assert error["original_error"] == before[2]
    return waiting == 1 and total == 1


async def assert_quarantine_invariant(
    conn: Conn, before: dict[str, tuple[Any, ...]]
) -> tuple[set[str], set[str]]:
    """Every row is untouched (exactly as before, no DLQ row) or fully quarantined; the DLQ
    holds nothing else. Returns (untouched ids, quarantined ids)."""
    now = await job_rows(conn)
    assert set(now) == set(before), "rows appeared or vanished"
    untouched: set[str] = set()
    done: set[str] = set()
    for ident, row in now.items():
        if row == before[ident] and row[5] == 0:
            untouched.add(ident)
        elif is_quarantined(row, before[ident]):
            done.add(ident)
        else:
            pytest.fail(f"row {ident} is half-quarantined: {row} (was {before[ident]})")
    # No DLQ row without a marked original (orphans would not show in the per-row counts).
    assert await scalar(conn, "SELECT count(*) FROM queue_jobs_dlq") == len(done)
    dupes = await scalar(
        conn,
        "SELECT count(*) FROM (SELECT original_job_id FROM queue_jobs_dlq"
        " GROUP BY 1 HAVING count(*) > 1) x",
    )
    assert dupes == 0
    return untouched, done


async def wait_for_no_queueops(conn: Conn) -> None:
    """Until the server has ended every queueops backend of this database: a killed client's
    transaction is aborted (and its row locks released) only once its backend notices."""
    deadline = time.monotonic() + 10
    while await scalar(
        conn,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'queueops'",
    ):
        assert time.monotonic() < deadline, "a killed client's backend is still there"
        await asyncio.sleep(0.02)


def run_crash(url: str, operation: str, step: str, batch: int, size: int) -> None:
    """Run tests/crash_pg_quarantine.py and insist it died of its own SIGKILL."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), url, operation, step, str(batch), str(size)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr[-2000:])


BOOM = compile_user_pattern("boom")


async def quarantine_all(backend: PostgresBackend, size: int, checkpoint: Any = None) -> Any:
    extra = {} if checkpoint is None else {"checkpoint": checkpoint}
    return await backend.quarantine_matching(
        "queue_jobs", BOOM, limit=100_000, reason="r", actor="test", batch_size=size, **extra
    )


# --- 1. SIGKILL between statements ---------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("step", ["locked", "marked", "copied"])
async def test_sigkill_mid_quarantine_batch(
    pg_url: str, pg_conn: Conn, step: str, batch: int
) -> None:
    """A process killed at `step` of batch `batch` (300 rows, batches of 50): the batches
    before it are committed whole, the killed one and the rest are untouched (the server
    aborted its transaction), and a rerun quarantines the rest, each row exactly once."""
    backend = await prepared(pg_conn, pg_url)
    try:
        await seed_failed(pg_conn, 300)
        before = await job_rows(pg_conn)
        await backend.close()  # the subprocess is the only queueops client while it runs
        backend = make_backend(pg_url)  # a closed pool cannot be reopened: a new "process"

        run_crash(pg_url, "quarantine", step, batch, 50)
        await wait_for_no_queueops(pg_conn)

        untouched, done = await assert_quarantine_invariant(pg_conn, before)
        committed = 50 * (batch - 1)
        assert {before[i][0] for i in done} == set(range(1, committed + 1))
        assert {before[i][0] for i in untouched} == set(range(committed + 1, 301))

        result = await quarantine_all(backend, 50)
        assert len(result.moved) == 300 - committed and not result.skipped
        untouched, done = await assert_quarantine_invariant(pg_conn, before)
        assert not untouched and len(done) == 300
    finally:
        await backend.close()


async def replay_pairs(conn: Conn) -> list[tuple[str, bool, str | None]]:
    cur = await conn.execute(
        "SELECT d.original_job_id::text, d.replayed_at IS NOT NULL, j.status"
        " FROM queue_jobs_dlq d LEFT JOIN queue_jobs j ON j.id = d.original_job_id"
    )
    return [tuple(r) for r in await cur.fetchall()]  # type: ignore[misc]


def assert_replay_invariant(pairs: list[tuple[str, bool, str | None]]) -> tuple[int, int]:
    """Each DLQ row is waiting with its original still failed, or replayed with its
    original pending: never one without the other. Returns (waiting, replayed)."""
    waiting = replayed = 0
    for original, is_replayed, status in pairs:
        if is_replayed:
            assert status == "pending", (original, status)
            replayed += 1
        else:
            assert status == "failed", (original, status)
            waiting += 1
    assert len({p[0] for p in pairs}) == len(pairs), "two DLQ rows for one job"
    return waiting, replayed


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("step", ["requeued", "marked"])
async def test_sigkill_mid_replay_batch(pg_url: str, pg_conn: Conn, step: str, batch: int) -> None:
    """A replay killed at `step` of batch `batch`: the batches before are replayed whole
    (original pending + DLQ row replayed), the rest still waiting with originals failed
    and unchanged; the rerun replays exactly the rest."""
    backend = await prepared(pg_conn, pg_url)
    try:
        await seed_failed(pg_conn, 300)
        assert len((await quarantine_all(backend, 300)).moved) == 300
        before = await job_rows(pg_conn)
        await backend.close()
        backend = make_backend(pg_url)

        run_crash(pg_url, "replay", step, batch, 50)
        await wait_for_no_queueops(pg_conn)

        waiting, replayed = assert_replay_invariant(await replay_pairs(pg_conn))
        assert (waiting, replayed) == (300 - 50 * (batch - 1), 50 * (batch - 1))
        now = await job_rows(pg_conn)
        assert sum(1 for i, r in now.items() if r[5] == 1 and r[4] == 1 and r == before[i]) == (
            waiting
        ), "a waiting DLQ row's original changed"

        result = await backend.dlq_replay("queue_jobs", count=10_000, batch_size=50)
        assert len(result.replayed) == waiting and not result.left
        assert assert_replay_invariant(await replay_pairs(pg_conn)) == (0, 300)
    finally:
        await backend.close()


# --- 2. pg_terminate_backend mid-batch -------------------------------------------------------


async def test_terminated_connection_mid_batch(pg_url: str, pg_conn: Conn) -> None:
    """The server ends the bot's connection between UPDATE and INSERT of batch 2 (a
    failover, an admin's pg_terminate_backend): the call fails with one clean line that
    names the host but not the password, batch 1 stays committed, batch 2 is untouched,
    and the next call (on a fresh pooled connection) finishes the job."""
    parts = urlsplit(pg_url)
    user = parts.username or "postgres"
    secret_url = urlunsplit(parts._replace(netloc=f"{user}:s3cret-pw@127.0.0.1:{parts.port}"))
    backend = await prepared(pg_conn, secret_url)
    terminated: list[int] = []
    batches = 0

    async def kill_at_marked(step: str) -> None:
        nonlocal batches
        batches += 1 if step == "locked" else 0
        if step != "marked" or batches != 2:
            return
        cur = await pg_conn.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'queueops' AND datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
        terminated.extend(r[0] for r in await cur.fetchall())
        deadline = time.monotonic() + 5
        while await scalar(
            pg_conn, "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (terminated,)
        ):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)

    try:
        await seed_failed(pg_conn, 300)
        before = await job_rows(pg_conn)
        with pytest.raises(QueueOpsError) as caught:
            await quarantine_all(backend, 50, kill_at_marked)
        message = str(caught.value)
        assert terminated, "no queueops backend was found to terminate"
        assert "\n" not in message and "127.0.0.1" in message, message
        assert "s3cret" not in message, message

        untouched, done = await assert_quarantine_invariant(pg_conn, before)
        assert {before[i][0] for i in done} == set(range(1, 51))
        assert {before[i][0] for i in untouched} == set(range(51, 301))

        result = await quarantine_all(backend, 50)
        assert len(result.moved) == 250 and not result.skipped
        untouched, done = await assert_quarantine_invariant(pg_conn, before)
        assert not untouched and len(done) == 300
    finally:
        await backend.close()


# --- 3. workers racing the quarantine --------------------------------------------------------

CLAIM = (
    "UPDATE queue_jobs SET status = 'running', updated_at = now() WHERE id = ("
    " SELECT id FROM queue_jobs WHERE status IN ('pending', 'failed')"
    "  AND NOT (status = 'failed' AND last_error ? 'original_status')"
    " ORDER BY run_after LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id::text"
)
"""A worker that also retries failed rows, so it competes with the quarantine for them. It
leaves rows carrying the quarantine mark alone: the runbook's procedure keeps a quarantined
row `failed`, so a worker retrying every failed row would simply re-run the DLQ's rows
afterwards (that is the team's worker contract, not a race). The mark is tested on the row
itself, which a FOR UPDATE re-checks on the newest version (a NOT EXISTS on the DLQ table
would be evaluated on the statement's older snapshot)."""


async def worker(url: str, seen: list[str], quarantine_done: asyncio.Event) -> None:
    """Claim one row (committed), "process" it (~1 ms), mark it done; until nothing is
    claimable and the quarantine has finished."""
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, application_name="worker"
    ) as conn:
        while True:
            cur = await conn.execute(CLAIM)
            row = await cur.fetchone()
            if row is None:
                if quarantine_done.is_set():
                    return
                await asyncio.sleep(0.002)
                continue
            seen.append(row[0])
            await asyncio.sleep(0.001)
            await conn.execute(
                "UPDATE queue_jobs SET status = 'done', updated_at = now() WHERE id = %s",
                (row[0],),
            )


async def test_workers_race_the_quarantine(pg_url: str, pg_conn: Conn) -> None:
    """3 workers and a bulk quarantine (batches of 25) over 2,000 matching failed rows and
    500 pending: each row ends either processed once (done) or quarantined once, never
    both, none lost; the result's moved/skipped lists say what the DB says."""
    backend = await prepared(pg_conn, pg_url)
    try:
        await seed_failed(pg_conn, 2000, spread="random")
        await seed_pending(pg_conn, 500)
        cur = await pg_conn.execute("SELECT id::text FROM queue_jobs WHERE status = 'failed'")
        failed_ids = {r[0] for r in await cur.fetchall()}
        finished = asyncio.Event()
        seen: list[list[str]] = [[], [], []]
        workers = [asyncio.create_task(worker(pg_url, s, finished)) for s in seen]
        await asyncio.sleep(0.02)  # the workers are claiming when the quarantine starts
        try:
            result = await quarantine_all(backend, 25)
        finally:
            finished.set()
            await asyncio.gather(*workers)

        processed = Counter(i for s in seen for i in s)
        assert max(processed.values()) == 1, "a row was processed twice"
        rows = await job_rows(pg_conn)
        assert len(rows) == 2500
        cur = await pg_conn.execute("SELECT original_job_id::text FROM queue_jobs_dlq")
        in_dlq = Counter(r[0] for r in await cur.fetchall())
        assert not in_dlq or max(in_dlq.values()) == 1
        assert not set(processed) & set(in_dlq), "processed and quarantined"
        for ident, row in rows.items():
            if ident in processed:
                assert row[1] == "done" and row[5] == 0, (ident, row)
            else:
                assert ident in failed_ids and is_quarantined(row), (ident, row)

        moved = {m.job_id for m in result.moved}
        skipped = {m.job_id for m in result.skipped}
        assert moved == set(in_dlq)
        assert skipped <= set(processed) and not moved & set(processed)
        assert len(moved) + len(skipped) == result.matched
        assert set(processed) & failed_ids, "the workers never competed for a failed row"
    finally:
        await backend.close()


# --- 4. two replicas -------------------------------------------------------------------------


async def test_two_replicas_race_the_quarantine(pg_url: str, pg_conn: Conn) -> None:
    """Two bot replicas (two pools) run the same bulk quarantine at once: they must split
    the rows (disjoint moved lists summing to all), one DLQ row per row. Both read the
    same pages, so they go for the same batches at the same moment: the SKIP LOCKED
    statement of one replica meets rows the other has just committed. Three rounds, to
    give the interleavings a chance."""
    await load_seed_schema(pg_conn)
    one, two = make_backend(pg_url), make_backend(pg_url)
    try:
        await one.init_dlq()
        for _ in range(3):
            await pg_conn.execute("DELETE FROM queue_jobs_dlq")
            await pg_conn.execute("DELETE FROM queue_jobs")
            await seed_failed(pg_conn, 600)
            before = await job_rows(pg_conn)
            a, b = await asyncio.gather(quarantine_all(one, 25), quarantine_all(two, 25))
            moved_a = {m.job_id for m in a.moved}
            moved_b = {m.job_id for m in b.moved}
            dlq_rows = await scalar(pg_conn, "SELECT count(*) FROM queue_jobs_dlq")
            assert not moved_a & moved_b, (
                f"{len(moved_a & moved_b)} rows moved by both replicas;"
                f" {dlq_rows} DLQ rows for 600 jobs"
            )
            assert len(moved_a) + len(moved_b) == 600
            untouched, done = await assert_quarantine_invariant(pg_conn, before)
            assert not untouched and len(done) == 600
    finally:
        await one.close()
        await two.close()


async def test_two_replicas_race_the_replay(pg_url: str, pg_conn: Conn) -> None:
    """Two replicas replay the same DLQ at once (600 rows quarantined by one replica
    first): each DLQ row is replayed by exactly one of them, every original is pending
    once, nothing is left behind. Three rounds."""
    await load_seed_schema(pg_conn)
    one, two = make_backend(pg_url), make_backend(pg_url)
    try:
        await one.init_dlq()
        for _ in range(3):
            await pg_conn.execute("DELETE FROM queue_jobs_dlq")
            await pg_conn.execute("DELETE FROM queue_jobs")
            await seed_failed(pg_conn, 600)
            assert len((await quarantine_all(one, 100)).moved) == 600
            ra, rb = await asyncio.gather(
                one.dlq_replay("queue_jobs", count=600, batch_size=25),
                two.dlq_replay("queue_jobs", count=600, batch_size=25),
            )
            ids_a = {j.job_id for j in ra.replayed}
            ids_b = {j.job_id for j in rb.replayed}
            assert not ids_a & ids_b and len(ids_a) + len(ids_b) == 600
            assert len(ra.replayed) == len(ids_a) and len(rb.replayed) == len(ids_b)
            assert not ra.left and not rb.left
            assert assert_replay_invariant(await replay_pairs(pg_conn)) == (0, 600)
            pending = await scalar(
                pg_conn, "SELECT count(*) FROM queue_jobs WHERE status = 'pending'"
            )
            assert pending == 600
    finally:
        await one.close()
        await two.close()
