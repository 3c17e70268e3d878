"""The DB-backed job table as a queue, against a real PostgreSQL: every command the runbook
does by hand in psql, checked with the runbook's own queries.

Each test has a database of its own (tests/pg_fixtures.py) holding the runbook's
`queue_jobs` table (tests/fixtures/queue_jobs.sql). The crash and race tests are in
test_postgres_safety.py.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import pytest_asyncio
from cli_runner import run_cli
from pg_fixtures import load_seed_schema
from redis.asyncio import Redis
from redis_for_tests import REDIS_URL
from slack_helpers import MakeBot, slash, text_of
from slack_stub import SlackStub

from bot.config import load_settings
from bot.errors import NotFound, OperationFailed, Refused, UsageError
from bot.patterns import compile_user_pattern
from bot.queues.postgres.backend import PostgresBackend
from bot.queues.service import QueueService

Conn = psycopg.AsyncConnection[Any]
PASSWORD = "pg-s3cret-Pw"

# The runbook's copy-paste queries, verbatim: what an engineer runs in psql today.
RUNBOOK_SNAPSHOT = """
SELECT status, type, COUNT(*) AS cnt
FROM queue_jobs
GROUP BY status, type
ORDER BY cnt DESC;
"""
RUNBOOK_OLDEST_PENDING = """
SELECT id, type, payload, run_after, created_at
FROM queue_jobs
WHERE status = 'pending'
ORDER BY run_after ASC, created_at ASC LIMIT 50;
"""
RUNBOOK_FAILED_RECENT = """
SELECT id, type, attempts, last_error, updated_at
FROM queue_jobs
WHERE status = 'failed'
ORDER BY updated_at DESC LIMIT 100;
"""


def with_password(url: str) -> str:
    """`url` with a password (trust auth ignores it): it must never be printed."""
    parts = urlsplit(url)
    netloc = f"{parts.username or 'postgres'}:{PASSWORD}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def fill(conn: Conn) -> None:
    """A bad night: 40 runnable pending (oldest 30 min), 6 delayed, 2 running, 9 failed
    (5 with a poison error), 3 done, 1 in a status outside the vocabulary."""
    await conn.execute(
        "INSERT INTO queue_jobs (type, status, payload, run_after, created_at)"
        " SELECT CASE WHEN g % 4 = 0 THEN 'backfill_range' ELSE 'process_snapshot' END,"
        " 'pending', jsonb_build_object('snapshot_id', g),"
        " now() - interval '30 minutes' + g * interval '10 seconds', now() - interval '1 hour'"
        " FROM generate_series(1, 40) g"
    )
    await conn.execute(
        "INSERT INTO queue_jobs (type, status, run_after)"
        " SELECT 'process_snapshot', 'pending', now() + interval '1 hour'"
        " FROM generate_series(1, 6)"
    )
    await conn.execute(
        "INSERT INTO queue_jobs (type, status) VALUES ('process_snapshot', 'running'),"
        " ('backfill_range', 'claimed'), ('x', 'done'), ('x', 'succeeded'), ('x', 'done'),"
        " ('legacy', 'archived')"
    )
    await conn.execute(
        "INSERT INTO queue_jobs (type, status, attempts, last_error, payload, updated_at)"
        " SELECT 'process_snapshot', 'failed', 3,"
        " jsonb_build_object('message', 'TypeError: cannot read .email of undefined'),"
        " jsonb_build_object('user', g, 'blob', repeat('x', 100)),"
        " now() - g * interval '1 minute' FROM generate_series(1, 5) g"
    )
    await conn.execute(
        "INSERT INTO queue_jobs (type, status, attempts, last_error, updated_at)"
        " SELECT 'backfill_range', 'failed', 1, to_jsonb('ETIMEDOUT db-replica-2'::text),"
        " now() - g * interval '1 hour' FROM generate_series(1, 4) g"
    )


@pytest_asyncio.fixture
async def table(pg_conn: Conn) -> Conn:
    await load_seed_schema(pg_conn)
    await fill(pg_conn)
    return pg_conn


@pytest_asyncio.fixture
async def backend(pg_url: str, table: Conn) -> AsyncIterator[PostgresBackend]:
    db_queue = PostgresBackend.from_settings(load_settings(queue_jobs_database_url=pg_url))
    assert db_queue is not None
    await db_queue.init_dlq()
    yield db_queue
    await db_queue.close()


async def rows(conn: Conn, query: str, *params: Any) -> list[tuple[Any, ...]]:
    cur = await conn.execute(query, params or None)
    return await cur.fetchall()


async def one_id(conn: Conn, where: str) -> str:
    [(found,)] = await rows(conn, f"SELECT id::text FROM queue_jobs WHERE {where} LIMIT 1")
    return str(found)


async def test_snapshot_counts_equal_the_runbooks_group_by_in_one_statement(
    backend: PostgresBackend, table: Conn
) -> None:
    await backend.shapes()  # the schema is read once per process, not per snapshot
    before = backend.db.statements
    [snap] = await backend.snapshot()
    assert backend.db.statements - before == 1
    by_status: dict[str, int] = {}
    for status, _type, cnt in await rows(table, RUNBOOK_SNAPSHOT):
        by_status[status] = by_status.get(status, 0) + cnt
    c = snap.counts
    assert c["waiting"] + c["delayed"] == by_status["pending"] == 46
    assert (c["waiting"], c["delayed"]) == (40, 6)
    assert c["active"] == by_status["running"] + by_status["claimed"]
    assert c["failed"] == by_status["failed"] == 9
    assert c["completed"] == by_status["done"] + by_status["succeeded"]
    assert snap.other_statuses == {"archived": 1}
    assert sum(c.values()) + sum(snap.other_statuses.values()) == sum(by_status.values())
    # The oldest pending job is the runbook's first row among the runnable ones.
    oldest = await rows(table, RUNBOOK_OLDEST_PENDING)
    assert snap.oldest_waiting_id == str(oldest[0][0])
    assert snap.oldest_waiting_age_ms is not None
    assert 29 * 60_000 < snap.oldest_waiting_age_ms < 31 * 60_000
    assert [(t.key, t.count) for t in snap.top_waiting_names] == [
        ("process_snapshot", 36),
        ("backfill_range", 10),
    ]
    # The newest failures, with last_error, in the runbook's order.
    failed = await rows(table, RUNBOOK_FAILED_RECENT)
    assert [f.job_id for f in snap.recent_failures] == [str(r[0]) for r in failed][:10]
    assert snap.recent_failures[0].reason == "TypeError: cannot read .email of undefined"
    assert snap.top_failure_reasons[0].key == "TypeError: cannot read .email of undefined"
    assert (snap.kind, snap.name, snap.dlq_depth, snap.is_paused) == (
        "postgres",
        "queue_jobs",
        0,
        False,
    )


async def test_probe_is_one_statement_and_counts_what_finished_since_the_last(
    backend: PostgresBackend, table: Conn
) -> None:
    await backend.shapes()
    before = backend.db.statements
    first = (await backend.probe()).queues[0]
    assert backend.db.statements - before == 1
    assert (first.ready, first.counts["delayed"], first.counts["active"]) == (40, 6, 2)
    assert first.runnable and (first.failed, first.completed) == (0, 0)
    assert first.oldest_runnable_since_ms is not None
    await asyncio.sleep(0.01)
    # A worker finishes three rows and fails one: the next probe sees them as new.
    await table.execute(
        "UPDATE queue_jobs SET status = 'done', updated_at = now() WHERE id IN"
        " (SELECT id FROM queue_jobs WHERE status = 'pending' ORDER BY run_after LIMIT 3)"
    )
    await table.execute(
        "UPDATE queue_jobs SET status = 'failed', updated_at = now() WHERE id IN"
        " (SELECT id FROM queue_jobs WHERE status = 'pending' ORDER BY run_after LIMIT 1)"
    )
    second = (await backend.probe()).queues[0]
    assert (second.completed, second.failed, second.ready) == (3, 1, 36)
    third = (await backend.probe()).queues[0]
    assert (third.completed, third.failed) == (3, 1)  # running totals: nothing new


async def test_quarantine_one_row_as_the_runbook_does_and_refuse_a_running_one(
    backend: PostgresBackend, table: Conn
) -> None:
    poison = await one_id(table, "status = 'pending' ORDER BY run_after")
    move = await backend.quarantine(
        "queue_jobs", poison, reason="poison: crashes the parser", actor="cli:test"
    )
    assert move.moved and move.from_state == "pending"
    [(status, error)] = await rows(
        table, "SELECT status, last_error FROM queue_jobs WHERE id = %s", poison
    )
    assert status == "failed"
    assert error["reason"] == "poison: crashes the parser"
    assert error["original_status"] == "pending" and error["quarantined_by"] == "cli:test"
    [dlq] = await rows(
        table,
        "SELECT original_job_id::text, type, payload, reason FROM queue_jobs_dlq",
    )
    [(payload,)] = await rows(table, "SELECT payload FROM queue_jobs WHERE id = %s", poison)
    assert dlq == (poison, "process_snapshot", payload, "poison: crashes the parser")
    again = await backend.quarantine("queue_jobs", poison, reason="x", actor="t")
    assert not again.moved and again.outcome == "quarantined"

    running = await one_id(table, "status = 'running'")
    refused = await backend.quarantine("queue_jobs", running, reason="x", actor="t")
    assert not refused.moved and refused.outcome == "active"
    assert "is running (status 'running')" in (refused.problem or "")
    done = await one_id(table, "status = 'done'")
    assert (await backend.quarantine("queue_jobs", done, reason="x", actor="t")).outcome == (
        "completed"
    )
    missing = await backend.quarantine(
        "queue_jobs", "00000000-0000-0000-0000-000000000000", reason="x", actor="t"
    )
    assert missing.outcome == "missing"
    with pytest.raises(UsageError, match="not a valid job id"):
        await backend.quarantine("queue_jobs", "not-a-uuid", reason="x", actor="t")
    assert len(await rows(table, "SELECT 1 FROM queue_jobs_dlq")) == 1


async def test_a_row_a_worker_holds_is_skipped_not_waited_for(
    backend: PostgresBackend, table: Conn, pg_url: str
) -> None:
    target = await one_id(table, "status = 'failed'")
    async with await psycopg.AsyncConnection.connect(pg_url) as worker:
        await worker.execute("SELECT 1 FROM queue_jobs WHERE id = %s FOR UPDATE", (target,))
        move = await asyncio.wait_for(
            backend.quarantine("queue_jobs", target, reason="x", actor="t"), 3
        )
        assert not move.moved and move.outcome == "locked"
        await worker.rollback()
    assert (await backend.quarantine("queue_jobs", target, reason="x", actor="t")).moved


async def test_bulk_quarantine_by_regex_moves_the_matches_once(
    backend: PostgresBackend, table: Conn
) -> None:
    pattern = compile_user_pattern(r"read \.email")
    preview = await backend.preview_failed_matching("queue_jobs", pattern, limit=100)
    assert (preview.count, preview.read) == (5, 9)
    assert preview.sample[0][1] == "TypeError: cannot read .email of undefined"
    result = await backend.quarantine_matching(
        "queue_jobs", pattern, limit=3, reason="poison", actor="t", batch_size=2
    )
    assert (len(result.moved), result.batches, result.matched) == (3, 2, 3)
    rest = await backend.quarantine_matching(
        "queue_jobs", pattern, limit=100, reason="poison", actor="t"
    )
    assert len(rest.moved) == 2  # the three already quarantined are not read as candidates
    moved = {m.job_id for m in result.moved + rest.moved}
    dlq = await rows(table, "SELECT original_job_id::text FROM queue_jobs_dlq")
    assert {r[0] for r in dlq} == moved and len(dlq) == 5
    timeouts = await rows(
        table,
        "SELECT count(*) FROM queue_jobs"
        " WHERE last_error = to_jsonb('ETIMEDOUT db-replica-2'::text)",
    )
    assert timeouts == [(4,)]  # what did not match is untouched
    nothing = await backend.quarantine_matching(
        "queue_jobs", pattern, limit=100, reason="poison", actor="t"
    )
    assert (nothing.moved, nothing.scanned) == ([], 4)


async def test_a_pathological_regex_is_refused_or_bounded_not_run_on_the_loop(
    backend: PostgresBackend, table: Conn
) -> None:
    await table.execute(
        "UPDATE queue_jobs SET last_error = to_jsonb(repeat('a', 5000) || '!')"
        " WHERE status = 'failed'"
    )
    started = asyncio.get_running_loop().time()
    result = await backend.quarantine_matching(
        "queue_jobs", compile_user_pattern("(a+)+$"), limit=10, reason="x", actor="t"
    )
    assert asyncio.get_running_loop().time() - started < 5
    assert result.scanned == 9  # RE2 runs in linear time: every row read, each matched


async def test_replay_is_a_canary_of_the_oldest_and_marks_the_dlq_rows(
    backend: PostgresBackend, table: Conn
) -> None:
    pattern = compile_user_pattern("email")
    await backend.quarantine_matching("queue_jobs", pattern, limit=100, reason="r", actor="t")
    listing = await backend.dlq_list("queue_jobs", limit=3)
    assert listing.depth == 5 and len(listing.entries) == 3
    entry = await backend.dlq_show("queue_jobs", listing.entries[0].job_id)
    assert entry.from_state == "failed" and entry.quarantine_reason == "r"
    assert entry.original_failed_reason == "TypeError: cannot read .email of undefined"
    oldest_two = [
        r[0]
        for r in await rows(
            table,
            "SELECT original_job_id::text FROM queue_jobs_dlq ORDER BY created_at, id LIMIT 2",
        )
    ]
    result = await backend.dlq_replay("queue_jobs", count=2)
    assert [j.job_id for j in result.replayed] == oldest_two and not result.left
    back = await rows(
        table,
        "SELECT status, attempts, run_after <= now() FROM queue_jobs WHERE id::text = ANY(%s)",
        oldest_two,
    )
    assert back == [("pending", 3, True)] * 2  # attempts kept without --reset-attempts
    marked = await rows(
        table, "SELECT count(*) FILTER (WHERE replayed_at IS NOT NULL) FROM queue_jobs_dlq"
    )
    assert marked == [(2,)]
    assert (await backend.dlq_list("queue_jobs")).depth == 3
    again = await backend.dlq_replay("queue_jobs", count=10, reset_attempts=True)
    assert len(again.replayed) == 3
    assert await rows(table, "SELECT DISTINCT attempts FROM queue_jobs WHERE payload ? 'blob'") in (
        [(0,)],
        [(3,)],
        [(0,), (3,)],
        [(3,), (0,)],
    )
    assert (await backend.dlq_replay("queue_jobs", count=10)).replayed == []


async def test_replay_puts_back_a_deleted_row_and_leaves_one_retried_meanwhile(
    backend: PostgresBackend, table: Conn
) -> None:
    await backend.quarantine_matching(
        "queue_jobs", compile_user_pattern("email"), limit=2, reason="r", actor="t"
    )
    gone, retried = [
        r[0]
        for r in await rows(
            table, "SELECT original_job_id FROM queue_jobs_dlq ORDER BY created_at, id"
        )
    ]
    [(payload,)] = await rows(table, "SELECT payload FROM queue_jobs WHERE id = %s", gone)
    await table.execute("DELETE FROM queue_jobs WHERE id = %s", (gone,))
    await table.execute("UPDATE queue_jobs SET status = 'done' WHERE id = %s", (retried,))
    result = await backend.dlq_replay("queue_jobs", count=5)
    assert [j.job_id for j in result.replayed] == [str(gone)]
    assert [j.job_id for j in result.left] == [str(retried)]
    assert "is 'done' now" in (result.left[0].problem or "")
    assert await rows(table, "SELECT status, payload FROM queue_jobs WHERE id = %s", gone) == [
        ("pending", payload)
    ]


async def test_a_dlq_without_replayed_at_loses_the_row_on_replay(pg_url: str, table: Conn) -> None:
    await table.execute(
        "CREATE TABLE queue_jobs_dlq (id uuid PRIMARY KEY, original_job_id uuid NOT NULL,"
        " type text, payload jsonb, reason text, created_at timestamptz NOT NULL)"
    )
    db_queue = PostgresBackend.from_settings(load_settings(queue_jobs_database_url=pg_url))
    assert db_queue is not None
    try:
        moved = await db_queue.quarantine_matching(
            "queue_jobs", compile_user_pattern("email"), limit=2, reason="r", actor="t"
        )
        assert len(moved.moved) == 2  # gen_random_uuid() for an id without a default
        assert len((await db_queue.dlq_replay("queue_jobs", count=1)).replayed) == 1
        assert await rows(table, "SELECT count(*) FROM queue_jobs_dlq") == [(1,)]
        setup = await db_queue.init_dlq()
        assert not setup.created and not setup.replayed_at
    finally:
        await db_queue.close()


async def test_retry_moves_failed_rows_back_but_never_quarantined_ones(
    backend: PostgresBackend, table: Conn
) -> None:
    await backend.quarantine_matching(
        "queue_jobs", compile_user_pattern("email"), limit=100, reason="r", actor="t"
    )
    assert await backend.retry("queue_jobs", count=2) == 2
    assert await backend.retry("queue_jobs", count=None) == 2
    assert await backend.retry("queue_jobs", count=None) == 0
    left = await rows(table, "SELECT count(*) FROM queue_jobs WHERE status = 'failed'")
    assert left == [(5,)]  # the five in the DLQ stay failed


async def test_pause_is_refused_on_a_bare_table_and_runs_the_configured_flag(
    backend: PostgresBackend, table: Conn, pg_url: str
) -> None:
    with pytest.raises(Refused, match="it has no pause; set QUEUE_JOBS_PAUSE_SQL"):
        await backend.pause("queue_jobs")
    await table.execute("CREATE TABLE feature_flags (name text PRIMARY KEY, data jsonb)")
    await table.execute(
        "INSERT INTO feature_flags VALUES ('ingest_control', '{\"ingest_paused\": false}')"
    )
    flag = "WHERE name = 'ingest_control'"
    flagged = PostgresBackend.from_settings(
        load_settings(
            queue_jobs_database_url=pg_url,
            queue_jobs_pause_sql="UPDATE feature_flags SET data = jsonb_set(data, "
            f"'{{ingest_paused}}', 'true'::jsonb) {flag};",
            queue_jobs_resume_sql="UPDATE feature_flags SET data = jsonb_set(data, "
            f"'{{ingest_paused}}', 'false'::jsonb) {flag}",
            queue_jobs_paused_sql="SELECT (data->>'ingest_paused')::boolean FROM "
            f"feature_flags {flag}",
        )
    )
    assert flagged is not None
    try:
        assert await flagged.pause("queue_jobs") is False
        [snap] = await flagged.snapshot()
        assert snap.is_paused and (await flagged.probe()).queues[0].is_paused
        assert not (await flagged.probe()).queues[0].runnable
        with pytest.raises(Refused, match="is paused"):
            await flagged.dlq_replay("queue_jobs", count=1)
        assert await flagged.resume("queue_jobs") is True
        assert not (await flagged.snapshot())[0].is_paused
    finally:
        await flagged.close()


async def test_job_show_reads_the_row(backend: PostgresBackend, table: Conn) -> None:
    target = await one_id(table, "status = 'failed' AND payload ? 'blob'")
    job = await backend.job("queue_jobs", target)
    assert (job.state, job.status, job.job_name, job.attempts) == (
        "failed",
        "failed",
        "process_snapshot",
        3,
    )
    assert job.failed_reason == "TypeError: cannot read .email of undefined"
    assert isinstance(job.data, dict) and "blob" in job.data and not job.in_dlq
    later = await one_id(table, "run_after > now()")
    assert (await backend.job("queue_jobs", later)).state == "delayed"
    with pytest.raises(NotFound):
        await backend.job("queue_jobs", "00000000-0000-0000-0000-000000000000")


async def test_other_names_other_columns_other_status_words(pg_conn: Conn, pg_url: str) -> None:
    """A team's own table: another schema, table, columns and status words."""
    await pg_conn.execute("CREATE SCHEMA ops")
    await pg_conn.execute(
        "CREATE TABLE ops.tasks (task_id bigserial PRIMARY KEY, kind text NOT NULL,"
        " state text NOT NULL, body jsonb NOT NULL DEFAULT '{}', due_at timestamptz,"
        " created_at timestamptz NOT NULL DEFAULT now(),"
        " updated_at timestamptz NOT NULL DEFAULT now(), error text)"
    )
    await pg_conn.execute(
        "INSERT INTO ops.tasks (kind, state, error) VALUES ('a', 'queued', NULL),"
        " ('a', 'queued', NULL), ('b', 'working', NULL), ('b', 'broken', 'boom 1'),"
        " ('b', 'broken', 'boom 2'), ('c', 'ok', NULL)"
    )
    settings = load_settings(
        queue_jobs_database_url=pg_url,
        queue_jobs_table="ops.tasks",
        queue_jobs_dlq_table="ops.tasks_dead",
        queue_jobs_columns="id=task_id,type=kind,status=state,payload=body,run_after=due_at,"
        "last_error=error",
        queue_jobs_statuses="waiting=queued,active=working,failed=broken,completed=ok",
    )
    db_queue = PostgresBackend.from_settings(settings)
    assert db_queue is not None
    try:
        with pytest.raises(Refused, match="queueops db init-dlq"):
            await db_queue.quarantine("tasks", "4", reason="r", actor="t")
        assert (await db_queue.init_dlq()).created
        [snap] = await db_queue.snapshot(["tasks"])
        assert snap.name == "tasks" and snap.oldest_waiting_age_ms is not None
        assert {k: v for k, v in snap.counts.items() if v} == {
            "waiting": 2,
            "active": 1,
            "failed": 2,
            "completed": 1,
        }
        moved = await db_queue.quarantine_matching(
            "tasks", compile_user_pattern("boom"), limit=10, reason="r", actor="t"
        )
        assert len(moved.moved) == 2
        errors = await rows(pg_conn, "SELECT error FROM ops.tasks WHERE state = 'broken'")
        assert all(json.loads(e)["original_error"].startswith("boom") for (e,) in errors)
        replayed = await db_queue.dlq_replay("tasks", count=5)
        assert len(replayed.replayed) == 2
        assert await rows(pg_conn, "SELECT count(*) FROM ops.tasks WHERE state = 'queued'") == [
            (4,)
        ]
    finally:
        await db_queue.close()


async def test_a_locked_table_fails_the_command_in_the_statement_timeout(
    pg_url: str, table: Conn
) -> None:
    db_queue = PostgresBackend.from_settings(
        load_settings(queue_jobs_database_url=pg_url, queue_jobs_statement_timeout_ms="300ms")
    )
    assert db_queue is not None
    try:
        await db_queue.shapes()
        async with await psycopg.AsyncConnection.connect(pg_url) as holder:
            await holder.execute("LOCK TABLE queue_jobs IN ACCESS EXCLUSIVE MODE")
            started = asyncio.get_running_loop().time()
            with pytest.raises(OperationFailed, match="after 300ms") as caught:
                await db_queue.snapshot()
            assert asyncio.get_running_loop().time() - started < 3
            assert "\n" not in str(caught.value)
            await holder.rollback()
        assert (await db_queue.snapshot())[0].counts["failed"] == 9
    finally:
        await db_queue.close()


def cli_env(pg_url: str, prefix: str, **more: str) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": REDIS_URL,
        "QUEUEOPS_PREFIX": prefix,
        "QUEUEOPS_STATE_PREFIX": f"{prefix}-state",
        "QUEUE_JOBS_DATABASE_URL": with_password(pg_url),
        **more,
    }


async def test_the_cli_shows_the_db_queue_beside_bullmq_and_never_its_password(
    table: Conn, pg_url: str, prefix: str, service: QueueService
) -> None:
    await service.store.bullmq(service.ref("emails")).add("send", {"to": 1})
    env = cli_env(pg_url, prefix)
    code, out, err = await run_cli(("snapshot", "--json"), env)
    assert code == 0, err
    queues = json.loads(out)["queues"]
    assert [(q["name"], q["kind"]) for q in queues] == [
        ("emails", "bullmq"),
        ("queue_jobs", "postgres"),
    ]
    assert queues[1]["counts"]["failed"] == 9 and queues[1]["prefix"] == "postgres"
    code, out, err = await run_cli(("db", "init-dlq"), env)
    assert code == 0 and "created the DLQ table queue_jobs_dlq" in out, err
    poison = await one_id(table, "status = 'pending'")
    code, out, _ = await run_cli(("quarantine", "queue_jobs", poison, "--reason", "p"), env)
    assert code == 0 and "to 'queue_jobs_dlq'" in out
    code, out, _ = await run_cli(("dlq", "list", "postgres:queue_jobs", "--json"), env)
    assert code == 0 and json.loads(out)["listing"]["entries"][0]["jobId"] == poison
    code, _, err = await run_cli(("pause", "queue_jobs"), env)
    assert code == 1 and "it has no pause" in err
    code, _, err = await run_cli(("job", "show", "queue_jobs", "nope"), env)
    assert code == 2 and "not a valid job id" in err
    # Down: one line naming host:port/db, the Redis queues still shown, no password.
    parts = urlsplit(pg_url)
    down = urlunsplit(parts._replace(netloc=f"postgres:{PASSWORD}@127.0.0.1:1"))
    code, out, err = await run_cli(
        ("snapshot",), {**env, "QUEUE_JOBS_DATABASE_URL": down}, within=30
    )
    assert code == 1 and "emails" in out
    assert f"cannot reach PostgreSQL at 127.0.0.1:1{parts.path}" in out + err
    code, out, err = await run_cli(
        ("snapshot", "queue_jobs"), {**env, "QUEUE_JOBS_DATABASE_URL": down}, within=30
    )
    assert code == 1 and len(err.strip().splitlines()) == 1
    for text in (out, err):
        assert PASSWORD not in text


async def test_a_bad_database_url_is_one_line_naming_the_variable(pg_url: str, prefix: str) -> None:
    code, _, err = await run_cli(
        ("snapshot",), cli_env(pg_url, prefix, QUEUE_JOBS_DATABASE_URL=f"mysql://u:{PASSWORD}@h/db")
    )
    assert code == 2 and "QUEUE_JOBS_DATABASE_URL: 'mysql://h/db' is not a PostgreSQL URL" in err
    assert PASSWORD not in err and len(err.strip().splitlines()) == 1
    code, _, err = await run_cli(
        ("snapshot",), cli_env(pg_url, prefix, QUEUE_JOBS_COLUMNS="status=st;drop")
    )
    assert code == 2 and "QUEUE_JOBS_COLUMNS" in err


async def test_the_tick_reads_the_db_queue_in_one_statement_and_redis_in_one_command(
    backend: PostgresBackend, redis: Redis, prefix: str
) -> None:
    service = QueueService(redis, prefixes=[prefix], queues=["emails"], postgres=backend)
    await service.queues()
    await backend.shapes()
    before = backend.db.statements
    result = await service.probe()
    assert [q.shown for q in result.queues] == ["emails", "queue_jobs"]
    assert result.runnable == ["queue_jobs"] and backend.db.statements - before == 1
    # The database down: the tick still reads the Redis queues.
    await backend.db.close()
    backend.db = type(backend.db)(
        "postgresql://postgres@127.0.0.1:1/none",
        location="127.0.0.1:1/none",
        statement_timeout_ms=500,
    )
    result = await service.probe()
    assert [q.shown for q in result.queues] == ["emails"]


async def test_slack_snapshot_of_the_db_queue(
    make_bot: MakeBot, slack: SlackStub, table: Conn, pg_url: str
) -> None:
    bot = await make_bot(queue_jobs_database_url=with_password(pg_url))
    resp = await slash(bot, slack, "snapshot queue_jobs")
    assert resp.status == 200
    [reply] = await slack.wait_for("respond:r1")
    text = text_of(reply.body)
    assert "queue_jobs" in text and "TypeError: cannot read .email" in text
    assert PASSWORD not in json.dumps(reply.body)


async def test_a_quarantine_status_of_its_own_is_counted_once(pg_url: str, table: Conn) -> None:
    """QUEUE_JOBS_QUARANTINE_STATUS=quarantined: a worker retrying failed rows never sees
    them; the DLQ depth counts each once (its DLQ row), a hand-marked row without one too."""
    with pytest.raises(Exception, match="QUEUE_JOBS_QUARANTINE_STATUS: 'parked' is not"):
        load_settings(queue_jobs_database_url=pg_url, queue_jobs_quarantine_status="parked")
    db_queue = PostgresBackend.from_settings(
        load_settings(queue_jobs_database_url=pg_url, queue_jobs_quarantine_status="quarantined")
    )
    assert db_queue is not None
    try:
        await db_queue.init_dlq()
        moved = await db_queue.quarantine_matching(
            "queue_jobs", compile_user_pattern("email"), limit=2, reason="r", actor="t"
        )
        assert len(moved.moved) == 2
        assert await rows(
            table, "SELECT count(*) FROM queue_jobs WHERE status = 'quarantined'"
        ) == [(2,)]
        await table.execute(
            "UPDATE queue_jobs SET status = 'quarantined' WHERE id = (SELECT id FROM"
            " queue_jobs WHERE status = 'failed' LIMIT 1)"
        )
        [snap] = await db_queue.snapshot()
        assert (snap.dlq_depth, snap.counts["failed"]) == (3, 6)
        assert (await db_queue.probe()).queues[0].dlq_depth == 3
        assert await db_queue.retry("queue_jobs", count=None) == 6
        assert len((await db_queue.dlq_replay("queue_jobs", count=5)).replayed) == 2
        assert (await db_queue.snapshot())[0].dlq_depth == 1
    finally:
        await db_queue.close()


async def test_the_watcher_opens_an_incident_for_the_db_queue(
    make_bot: MakeBot, slack: SlackStub, table: Conn, pg_url: str
) -> None:
    """The real app's tick reads the table and the watcher's depth rule fires on it: the
    incident channel names the DB queue, as it would a BullMQ one."""
    from bot.http_app import TICKER

    bot = await make_bot(
        queues="none-here",
        queue_jobs_database_url=pg_url,
        watch_depth=30,
        drain_every_ms=3_600_000,
    )
    ticker = bot.app[TICKER]
    result = await ticker.tick()
    assert result is not None and "queue_jobs" in result.runnable
    [created] = await slack.wait_for("conversations.create")
    assert "queue" in created.body["name"] and "jobs" in created.body["name"]
    posts = await slack.wait_for("chat.postMessage")
    assert "40 jobs waiting (over 30)" in json.dumps(posts[0].body)


async def test_bullmq_only_commands_refuse_the_db_queue_in_one_line(
    table: Conn, pg_url: str, redis: Redis, prefix: str
) -> None:
    """What a bare table has no meaning for (workers, logs, schedulers, BullMQ's states)
    is refused for the DB queue with one line, never a traceback or a wrong answer."""
    import shlex

    from bot.dispatch import make_dispatcher
    from bot.roles import Role

    settings = load_settings(
        redis_url=REDIS_URL, prefix=prefix, queues="a", queue_jobs_database_url=pg_url
    )
    dispatcher = make_dispatcher(redis, settings, rate_limited=False)
    try:
        for line in (
            "find queue_jobs --state failed",
            "failures queue_jobs",
            "workers queue_jobs",
            "promote queue_jobs --all",
            "clean queue_jobs --state failed --older-than 1h",
            "schedulers queue_jobs",
            "add queue_jobs job {}",
            "empty queue_jobs --confirm queue_jobs",
            "obliterate queue_jobs --confirm queue_jobs",
        ):
            outcome = await dispatcher.run(
                shlex.split(line), actor="t", role=Role.ADMIN, transport="shell"
            )
            said = outcome.reply.data()
            assert said["ok"] is False and "queue_jobs" in said["error"], (line, said)
            assert "\n" not in said["error"] and "Traceback" not in said["error"]
    finally:
        await dispatcher.service.aclose()
