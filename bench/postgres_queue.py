"""Benchmark: the PostgreSQL job table (issue 13) against the runbook's own queries.

    .venv/bin/python bench/postgres_queue.py [--rows 10000,1000000] [--bulk 100000]
        [--stale-bulk 20000] [--runs 20] [--quick] [--json PATH]

On a database of its own (`qo_bench_<hex>`, created here and dropped at the end, also on
error) on the PostgreSQL at QUEUEOPS_BENCH_PG_URL (default postgres@127.0.0.1:5432), with
the runbook's `queue_jobs` table (tests/fixtures/queue_jobs.sql, both documented indexes)
and the DLQ table `queueops db init-dlq` creates:

1. The table is filled by `INSERT ... SELECT FROM generate_series`, 100,000 rows a
   statement, the indexes built after the rows (as a restore does), then VACUUM ANALYZE
   (an index-only scan needs the visibility map). Mix: 70% done, 18% pending (a third of
   them delayed: run_after in the future), 2% running, 10% failed with a jsonb last_error
   of four kinds; six job types.
2. At each `--rows` size: `PostgresBackend.snapshot()` and `.probe()`, and the anchor, the
   runbook's three copy-paste queries (counts by status and type, the oldest 50 pending,
   the newest 100 failed) on one autocommit psycopg connection as psql runs them, taking
   turns in the same rounds: median and p95 of `--runs` rounds after 2 warm-ups, and the
   statements each sends (queueops: the `Database.statements` delta). At the largest size,
   the plan of the probe and of the snapshot (EXPLAIN (ANALYZE, BUFFERS), node types: was
   it an Index Only Scan?), and the same timings once more without the two indexes (dropped,
   ANALYZE, measured, rebuilt) to show what the documented indexes buy.
3. Bulk quarantine of `--bulk` failed rows matching `ECONNRESET`, in a table of 4x that
   (another 5% failed with other errors, 50% done, 20% pending), through
   `quarantine_matching`: total time, rows/s, batches, and the longest lock held: each
   transaction of the backend's `Database` is timed (its `transaction` wrapped on the
   instance), and a batch is a transaction in which the backend's checkpoint said "marked"
   (it changed rows). The anchor is the runbook's procedure as a person runs it for the
   same rows: one transaction of INSERT INTO queue_jobs_dlq ... SELECT and UPDATE
   queue_jobs SET last_error = jsonb_build_object(...), whose lock is the whole
   transaction. The table is filled again between the two. This server may run without
   autovacuum, so for `--bulk` the bench stands in for it: ANALYZE of the DLQ table when
   it grew by 50 + 10% (autovacuum's defaults), checked every second. `--stale-bulk` rows
   are then moved the same way without it: the DLQ's statistics stay those of the empty
   table, as after `init_dlq` before autovacuum comes by.

Prints the tables and a JSON summary (also written to `--json PATH` when given).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import load_settings  # noqa: E402
from bot.patterns import compile_user_pattern  # noqa: E402
from bot.queues.postgres.backend import PostgresBackend  # noqa: E402

DDL = ROOT / "tests" / "fixtures" / "queue_jobs.sql"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CHUNK = 100_000
PATTERN = "ECONNRESET"
WARMUPS = 2
INDEXES = ("queue_jobs_status_run_after", "queue_jobs_status_updated_at")

TYPES = ("email.send", "invoice.render", "report.build", "webhook.deliver", "image.resize")
TYPES += ("search.reindex",)
ERRORS = (
    ("ECONNRESET", "connect ECONNRESET 10.0.3.7:5432"),
    ("ETIMEDOUT", "timeout of 30000ms exceeded"),
    ("VALIDATION", 'validation failed: missing field "email"'),
    ("OOM", "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory"),
)

# (upper bound of i % 100, status, delayed, error): the error is an index into ERRORS, or
# "mix" for the four kinds in turn.
MAIN_MIX = [
    (70, "done", False, None),
    (82, "pending", False, None),
    (88, "pending", True, None),
    (90, "running", False, None),
    (100, "failed", False, "mix"),
]
BULK_MIX = [
    (25, "failed", False, 0),
    (30, "failed", False, 2),
    (80, "done", False, None),
    (100, "pending", False, None),
]

# The runbook's copy-paste queries, as a person runs them in psql.
RUNBOOK_COUNTS = (
    "SELECT status, type, COUNT(*) AS cnt FROM queue_jobs GROUP BY status, type ORDER BY cnt DESC;"
)
RUNBOOK_PENDING = (
    "SELECT id, type, payload, run_after, created_at FROM queue_jobs WHERE status = 'pending'"
    " ORDER BY run_after ASC, created_at ASC LIMIT 50;"
)
RUNBOOK_FAILED = (
    "SELECT id, type, attempts, last_error, updated_at FROM queue_jobs WHERE status = 'failed'"
    " ORDER BY updated_at DESC LIMIT 100;"
)
RUNBOOK = (RUNBOOK_COUNTS, RUNBOOK_PENDING, RUNBOOK_FAILED)
MATCH = f"status = 'failed' AND last_error->>'message' LIKE '%{PATTERN}%'"
RUNBOOK_DLQ_COPY = (
    "INSERT INTO queue_jobs_dlq (id, original_job_id, type, payload, reason, created_at)"
    " SELECT gen_random_uuid(), id, type, payload, 'quarantined', now() FROM queue_jobs"
    f" WHERE {MATCH}"
)
RUNBOOK_DLQ_MARK = (
    "UPDATE queue_jobs SET status = 'failed', last_error = jsonb_build_object("
    "'reason', 'quarantined', 'original_status', status, 'original_error', last_error,"
    " 'quarantined_by', 'bench', 'quarantined_at', now()), updated_at = now()"
    f" WHERE {MATCH}"
)


def fill_sql(mix: list[tuple[int, str, bool, Any]]) -> sql.Composed:
    """One INSERT ... SELECT for rows lo..hi of `total` (params lo, hi, total)."""

    def case(values: list[str]) -> sql.Composable:
        arms = [
            sql.SQL("WHEN m < {} THEN {}").format(sql.Literal(bound), sql.SQL(v))
            for (bound, *_), v in zip(mix, values, strict=True)
        ]
        return sql.SQL("CASE {} END").format(sql.SQL(" ").join(arms))

    status = case([f"'{s}'" for _, s, _, _ in mix])
    delayed = case(["true" if d else "false" for _, _, d, _ in mix])
    error = case(
        [
            "NULL"
            if e is None
            else ("1 + (i / 100) %% " + str(len(ERRORS)) if e == "mix" else str(e + 1))
            for *_, e in mix
        ]
    )
    codes = sql.SQL("(ARRAY[{}])").format(sql.SQL(", ").join(sql.Literal(c) for c, _ in ERRORS))
    messages = sql.SQL("(ARRAY[{}])").format(sql.SQL(", ").join(sql.Literal(m) for _, m in ERRORS))
    types = sql.SQL("(ARRAY[{}])").format(sql.SQL(", ").join(sql.Literal(t) for t in TYPES))
    return sql.SQL(
        "INSERT INTO queue_jobs"
        " (type, status, payload, run_after, created_at, updated_at, attempts, last_error)"
        " SELECT {types}[1 + (i / 3) %% {ntypes}], status,"
        "  jsonb_build_object('account', i %% 5000, 'seq', i, 'source', 'bench'),"
        "  CASE WHEN delayed THEN now() + (1 + i %% 3600) * interval '1 second' ELSE created END,"
        "  created,"
        "  CASE status WHEN 'done' THEN created + interval '2 seconds'"
        "   WHEN 'failed' THEN created + interval '5 seconds'"
        "   WHEN 'running' THEN now() - (i %% 300) * interval '1 second' ELSE created END,"
        "  CASE status WHEN 'pending' THEN 0 WHEN 'failed' THEN 1 + i %% 5 ELSE 1 END,"
        "  CASE WHEN err IS NULL THEN NULL ELSE jsonb_build_object('message', {messages}[err],"
        "   'code', {codes}[err], 'worker', 'w-' || (i %% 8)) END"
        " FROM (SELECT i, {status} AS status, {delayed} AS delayed, {error} AS err,"
        "  now() - (%(total)s::int - i) * interval '50 milliseconds' - interval '1 minute'"
        "   AS created"
        "  FROM (SELECT i, i %% 100 AS m FROM generate_series(%(lo)s::int, %(hi)s::int) i) b) r"
    ).format(
        types=types,
        ntypes=sql.Literal(len(TYPES)),
        messages=messages,
        codes=codes,
        status=status,
        delayed=delayed,
        error=error,
    )


def ddl_parts() -> tuple[list[str], list[str]]:
    """The fixture's statements: the CREATE TABLE, and the CREATE INDEX statements."""
    text = "\n".join(
        line for line in DDL.read_text().splitlines() if not line.lstrip().startswith("--")
    )
    statements = [s.strip() for s in text.split(";") if s.strip()]
    indexes = [s for s in statements if s.upper().startswith("CREATE INDEX")]
    return [s for s in statements if s not in indexes], indexes


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def summary(values: list[float]) -> dict[str, float]:
    return {"medianMs": ms(statistics.median(values)), "p95Ms": ms(p95(values))}


class Bench:
    def __init__(
        self, admin: psycopg.AsyncConnection[Any], backend: PostgresBackend, url: str
    ) -> None:
        self.url = url
        self.admin = admin  # autocommit, as psql: DDL, fills, VACUUM, the anchors
        self.backend = backend
        self.tables, self.indexes = ddl_parts()
        self.txns: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None
        self._wrap_transactions()

    def _wrap_transactions(self) -> None:
        """Time every transaction of the backend's Database (on this instance only)."""
        db = self.backend.db
        plain = db.transaction

        @asynccontextmanager
        async def timed() -> AsyncIterator[Any]:
            record: dict[str, Any] = {"steps": set()}
            self._current = record
            start = time.perf_counter()
            try:
                async with plain() as conn:
                    yield conn
            finally:
                end = time.perf_counter()
                record["s"] = end - start
                if "locked_at" in record:
                    record["from_locked_s"] = end - record["locked_at"]
                self._current = None
                self.txns.append(record)

        db.transaction = timed  # type: ignore[method-assign]

    async def checkpoint(self, step: str) -> None:
        if self._current is not None:
            self._current["steps"].add(step)
            if step == "locked":
                self._current["locked_at"] = time.perf_counter()

    async def run(self, query: str | sql.Composable, params: Any = None) -> list[Any]:
        cur = await self.admin.execute(query, params)
        return await cur.fetchall() if cur.description else []

    # --- the table -----------------------------------------------------------------

    async def fill(self, rows: int, mix: list[tuple[int, str, bool, Any]]) -> dict[str, float]:
        """Empty both tables, drop the indexes, insert `rows`, build the indexes, VACUUM."""
        await self.run("TRUNCATE queue_jobs, queue_jobs_dlq")
        for name in INDEXES:
            await self.run(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)))
        start = time.perf_counter()
        insert = fill_sql(mix)
        for lo in range(1, rows + 1, CHUNK):
            hi = min(rows, lo + CHUNK - 1)
            await self.run(insert, {"lo": lo, "hi": hi, "total": rows})
        inserted = time.perf_counter()
        for statement in self.indexes:
            await self.run(statement)
        indexed = time.perf_counter()
        await self.run("VACUUM ANALYZE queue_jobs")
        await self.run("VACUUM ANALYZE queue_jobs_dlq")
        done = time.perf_counter()
        pages, visible = await self.visibility()
        return {
            "rows": rows,
            "insertS": round(inserted - start, 2),
            "indexS": round(indexed - inserted, 2),
            "vacuumAnalyzeS": round(done - indexed, 2),
            "totalS": round(done - start, 2),
            "pages": pages,
            "allVisiblePages": visible,
        }

    async def visibility(self) -> tuple[int, int]:
        """The table's pages, and those the visibility map marks all-visible."""
        ((pages, visible),) = await self.run(
            "SELECT relpages, relallvisible FROM pg_class WHERE oid = 'queue_jobs'::regclass"
        )
        return int(pages), int(visible)

    async def drop_indexes(self) -> None:
        for name in INDEXES:
            await self.run(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        await self.run("ANALYZE queue_jobs")

    async def create_indexes(self) -> None:
        for statement in self.indexes:
            await self.run(statement)
        await self.run("VACUUM ANALYZE queue_jobs")

    # --- reads ---------------------------------------------------------------------

    async def runbook_reads(self, queries: tuple[str, ...] = RUNBOOK) -> None:
        for query in queries:
            await self.run(query)

    async def timed(
        self, calls: dict[str, Callable[[], Awaitable[Any]]], runs: int, warmups: int
    ) -> dict[str, dict[str, Any]]:
        """Each call once a round, in turns; timings and statements per call."""
        times: dict[str, list[float]] = {k: [] for k in calls}
        statements: dict[str, set[int]] = {k: set() for k in calls}
        for round_no in range(warmups + runs):
            for name, call in calls.items():
                before = self.backend.db.statements
                start = time.perf_counter()
                await call()
                took = time.perf_counter() - start
                if round_no >= warmups:
                    times[name].append(took)
                    statements[name].add(self.backend.db.statements - before)
        out: dict[str, dict[str, Any]] = {}
        for name in calls:
            out[name] = summary(times[name])
            if name.startswith("runbook"):
                out[name]["statements"] = 3 if name == "runbook" else 1
            else:
                sent = sorted(statements[name])
                out[name]["statements"] = sent[0] if len(sent) == 1 else sent
        return out

    async def reads(self, runs: int, warmups: int) -> dict[str, Any]:
        backend = self.backend
        got = await self.timed(
            {
                "snapshot": backend.snapshot,
                "probe": backend.probe,
                "runbook": self.runbook_reads,
                "runbookCounts": lambda: self.runbook_reads((RUNBOOK_COUNTS,)),
            },
            runs,
            warmups,
        )
        got["snapshotOverRunbook"] = round(
            got["snapshot"]["medianMs"] / got["runbook"]["medianMs"], 2
        )
        got["probeOverRunbookCounts"] = round(
            got["probe"]["medianMs"] / got["runbookCounts"]["medianMs"], 2
        )
        return got

    async def plans(self) -> dict[str, Any]:
        """EXPLAIN (ANALYZE, BUFFERS) of the probe (since = None, and since = a minute ago,
        as the tick sends after its first) and of the snapshot: the plan's node types."""
        st = await self.backend.statements()
        (now_ms,) = (await self.run("SELECT (extract(epoch FROM now()) * 1000)::bigint"))[0]
        out: dict[str, Any] = {}
        cases = {
            "probe (since None)": (st.probe(), {"since": None}),
            "probe (since 1 min ago)": (st.probe(), {"since": int(now_ms) - 60_000}),
            "snapshot": (st.snapshot(), None),
        }
        for label, (query, params) in cases.items():
            text = query.as_string(self.admin)
            cur = psycopg.AsyncClientCursor(self.admin)
            await cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + text, params)
            ((plan_doc,),) = await cur.fetchall()
            doc = plan_doc if isinstance(plan_doc, list) else json.loads(plan_doc)
            nodes: list[str] = []
            walk(doc[0]["Plan"], nodes)
            out[label] = {
                "executionMs": round(float(doc[0]["Execution Time"]), 2),
                "nodes": nodes,
                "indexOnlyScan": any(n.startswith("Index Only Scan") for n in nodes),
                "seqScan": any(n == "Seq Scan on queue_jobs" for n in nodes),
            }
        return out

    # --- bulk quarantine -----------------------------------------------------------

    async def bulk_queueops(self, bulk: int, *, stand_in: bool) -> dict[str, Any]:
        """quarantine_matching of `bulk` rows; with `stand_in`, the bench ANALYZEs the DLQ
        table as autovacuum would (this server runs with autovacuum off)."""
        self.txns.clear()
        analyzes: list[float] = []
        stop = asyncio.Event()
        helper = asyncio.create_task(self.autoanalyze(stop, analyzes)) if stand_in else None
        before = self.backend.db.statements
        start = time.perf_counter()
        try:
            result = await self.backend.quarantine_matching(
                "queue_jobs",
                compile_user_pattern(PATTERN),
                limit=bulk,
                reason="bench",
                actor="bench",
                checkpoint=self.checkpoint,
            )
            total = time.perf_counter() - start
        finally:
            stop.set()
            if helper is not None:
                await helper
        batches = [t for t in self.txns if "marked" in t["steps"]]
        pages = [t["s"] for t in self.txns if not t["steps"]]
        locks = [t["s"] for t in batches]
        from_locked = [t["from_locked_s"] for t in batches]
        (dlq,) = (await self.run("SELECT count(*) FROM queue_jobs_dlq"))[0]
        return {
            "moved": len(result.moved),
            "skipped": len(result.skipped),
            "scanned": result.scanned,
            "dlqRows": int(dlq),
            "totalS": round(total, 2),
            "rowsPerS": round(len(result.moved) / total),
            "batches": result.batches,
            "transactions": len(self.txns),
            "statements": self.backend.db.statements - before,
            "longestLockMs": ms(max(locks)),
            "p95LockMs": ms(p95(locks)),
            "medianLockMs": ms(statistics.median(locks)),
            "longestFromLockedMs": ms(max(from_locked)),
            "pageReads": len(pages),
            "longestPageReadMs": ms(max(pages)) if pages else None,
            "medianPageReadMs": ms(statistics.median(pages)) if pages else None,
            "dlqAnalyzes": len(analyzes),
            "dlqAnalyzeMs": [ms(a) for a in analyzes],
        }

    async def autoanalyze(self, stop: asyncio.Event, log: list[float]) -> None:
        """Autovacuum's analyze rule at its defaults (autovacuum_analyze_threshold 50,
        autovacuum_analyze_scale_factor 0.1) for the DLQ table, checked every second from
        a connection of its own (the real autovacuum checks a database every
        autovacuum_naptime, 1 min by default: so this is its quickest case)."""
        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        try:
            at_last = 0
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                if stop.is_set():
                    return
                ((rows,),) = await (
                    await conn.execute("SELECT count(*) FROM queue_jobs_dlq")
                ).fetchall()
                if rows - at_last >= 50 + 0.1 * at_last:
                    start = time.perf_counter()
                    await conn.execute("ANALYZE queue_jobs_dlq")
                    log.append(time.perf_counter() - start)
                    at_last = rows
        finally:
            await conn.close()

    async def bulk_runbook(self) -> dict[str, Any]:
        start = time.perf_counter()
        async with self.admin.transaction():
            copied = (await self.admin.execute(RUNBOOK_DLQ_COPY)).rowcount
            marked = (await self.admin.execute(RUNBOOK_DLQ_MARK)).rowcount
        total = time.perf_counter() - start
        return {
            "moved": marked,
            "dlqRows": copied,
            "totalS": round(total, 2),
            "rowsPerS": round(marked / total),
            "batches": 1,
            "statements": 2,
            "longestLockMs": ms(total),
        }


def walk(plan: dict[str, Any], out: list[str]) -> None:
    label = plan["Node Type"]
    if plan.get("Index Name"):
        label += f" using {plan['Index Name']}"
    elif plan.get("Relation Name"):
        label += f" on {plan['Relation Name']}"
    if "Heap Fetches" in plan:
        label += f" (heap fetches {plan['Heap Fetches']})"
    out.append(label)
    for child in plan.get("Plans", ()):
        walk(child, out)


def code_fingerprint() -> str:
    """A short hash of bot/queues/postgres/*.py, to tell which tree a result measured."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "bot" / "queues" / "postgres").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def table(rows: list[dict[str, Any]]) -> str:
    heads = list(rows[0])
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(str(r[h]) for h in heads) + " |" for r in rows]
    return "\n".join(lines)


def read_rows(size: int, got: dict[str, Any], indexes: str) -> dict[str, Any]:
    snap, probe, book, counts = got["snapshot"], got["probe"], got["runbook"], got["runbookCounts"]
    return {
        "rows": f"{size:,}",
        "indexes": indexes,
        "snapshot p50/p95 ms": f"{snap['medianMs']}/{snap['p95Ms']}",
        "snapshot stmts": snap["statements"],
        "runbook 3 queries p50/p95 ms": f"{book['medianMs']}/{book['p95Ms']}",
        "snapshot / runbook": got["snapshotOverRunbook"],
        "probe p50/p95 ms": f"{probe['medianMs']}/{probe['p95Ms']}",
        "probe stmts": probe["statements"],
        "runbook counts p50 ms": counts["medianMs"],
        "probe / runbook counts": got["probeOverRunbookCounts"],
    }


async def bench(args: argparse.Namespace, url: str) -> dict[str, Any]:
    admin = await psycopg.AsyncConnection.connect(url, autocommit=True)
    backend = PostgresBackend.from_settings(
        load_settings(queue_jobs_database_url=url, queue_jobs_statement_timeout_ms=60_000)
    )
    assert backend is not None
    try:
        b = Bench(admin, backend, url)
        for statement in (*b.tables, *b.indexes):
            await b.run(statement)
        setup = await backend.init_dlq()  # its report: which documented indexes are missing
        result: dict[str, Any] = {
            "machine": {
                "nproc": os.cpu_count(),
                "postgres": (await b.run("SHOW server_version"))[0][0],
                "python": platform.python_version(),
                "psycopg": psycopg.__version__,
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "code": code_fingerprint(),
            },
            "dlqCreated": setup.created,
            "missingIndexes": setup.missing_indexes,
            "loads": [],
            "reads": [],
        }
        print(json.dumps(result["machine"]))
        rows_out = []
        for size in args.sizes:
            load = await b.fill(size, MAIN_MIX)
            result["loads"].append(load)
            print(f"loaded {size:,} rows in {load['totalS']} s ({load})", flush=True)
            got = await b.reads(args.runs, WARMUPS)
            result["reads"].append({"rows": size, "indexes": True, **got})
            rows_out.append(read_rows(size, got, "both"))
        largest = max(args.sizes)
        result["plans"] = await b.plans()
        await b.drop_indexes()
        try:
            plain = await b.reads(args.noindex_runs, 1)
            plain_plans = await b.plans()
        finally:
            await b.create_indexes()
        result["noIndex"] = {"rows": largest, **plain, "plans": plain_plans}
        rows_out.append(read_rows(largest, plain, "none"))
        indexed = result["reads"][-1]
        result["noIndex"]["snapshotOverIndexed"] = round(
            plain["snapshot"]["medianMs"] / indexed["snapshot"]["medianMs"], 2
        )
        result["noIndex"]["probeOverIndexed"] = round(
            plain["probe"]["medianMs"] / indexed["probe"]["medianMs"], 2
        )
        print(table(rows_out))
        for label, plan in result["plans"].items():
            print(f"EXPLAIN {label} at {largest:,} rows (both indexes):")
            print(f"  index-only scan: {'yes' if plan['indexOnlyScan'] else 'NO'};")
            print(f"  execution {plan['executionMs']} ms; nodes: {'; '.join(plan['nodes'])}")
        for label, plan in plain_plans.items():
            print(f"EXPLAIN {label} without the indexes: {'; '.join(plan['nodes'])}")

        # Bulk quarantine: queueops, then the runbook's one transaction on the same rows;
        # once with the DLQ's statistics kept as autovacuum would, once as they stay here.
        result["bulk"] = []
        cases = [
            ("queueops, DLQ analyzed as autovacuum would", args.bulk, True),
            ("queueops, DLQ statistics stale (no autovacuum)", args.stale_bulk, False),
        ]
        bulk_rows_out = []
        for label, size, stand_in in cases:
            if size <= 0:
                continue
            load = await b.fill(size * 4, BULK_MIX)
            print(f"bulk table: {size * 4:,} rows in {load['totalS']} s", flush=True)
            ours = await b.bulk_queueops(size, stand_in=stand_in)
            await b.fill(size * 4, BULK_MIX)
            theirs = await b.bulk_runbook()
            case = {
                "case": label,
                "failedMatching": size,
                "tableRows": size * 4,
                "queueops": ours,
                "runbook": theirs,
                "longestLockRatio": round(ours["longestLockMs"] / theirs["longestLockMs"], 4),
                "totalTimeRatio": round(ours["totalS"] / theirs["totalS"], 2),
            }
            result["bulk"].append(case)
            bulk_rows_out.append({"way": label, "rows": f"{size:,}", **_bulk_row(ours)})
            bulk_rows_out.append(
                {"way": "runbook, one transaction", "rows": f"{size:,}", **_bulk_row(theirs)}
            )
            print(
                f"{label}: longest lock queueops / runbook {case['longestLockRatio']};"
                f" total time {case['totalTimeRatio']}; longest page read"
                f" {ours['longestPageReadMs']} ms; DLQ analyzed {ours['dlqAnalyzes']} times",
                flush=True,
            )
        print(table(bulk_rows_out))
        return result
    finally:
        await backend.close()
        await admin.close()


def _bulk_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "moved": r["moved"],
        "total s": r["totalS"],
        "rows/s": r["rowsPerS"],
        "batches": r["batches"],
        "statements": r["statements"],
        "longest lock ms": r["longestLockMs"],
        "p95 lock ms": r.get("p95LockMs", "-"),
        "longest page read ms": r.get("longestPageReadMs", "-"),
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="10000,1000000", help="table sizes, comma-separated")
    ap.add_argument("--bulk", type=int, default=100_000, help="failed rows to quarantine")
    ap.add_argument(
        "--stale-bulk",
        type=int,
        default=20_000,
        help="failed rows to quarantine with the DLQ's statistics left stale (0: skip)",
    )
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--noindex-runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="10,000 and 100,000 rows, bulk 10,000")
    ap.add_argument("--json", type=Path, help="also write the summary here")
    args = ap.parse_args()
    if args.runs < 1 or args.noindex_runs < 1:
        ap.error("--runs and --noindex-runs must be at least 1")
    if args.quick:
        args.rows, args.bulk, args.stale_bulk = "10000,100000", 10_000, 5_000
    args.sizes = [int(x) for x in args.rows.split(",")]
    base = os.environ.get("QUEUEOPS_BENCH_PG_URL", DEFAULT_URL)
    name = f"qo_bench_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(base, autocommit=True) as server:
        await server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        result = await bench(args, with_database(base, name))
    finally:
        async with await psycopg.AsyncConnection.connect(base, autocommit=True) as server:
            await server.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    asyncio.run(main())
