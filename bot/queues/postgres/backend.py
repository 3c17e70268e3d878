"""PostgresBackend: a DB-backed job table as a queue, behind the same commands as BullMQ.

Every change is one transaction per batch, following the queue-backlog runbook's DLQ
procedure: the row is marked `failed` with `last_error = {reason, original_status, ...}`
and a copy with its full payload goes into the DLQ table, both or neither. Rows are taken
with `FOR UPDATE SKIP LOCKED` and each row's status is checked again under its lock, so a
worker claiming a row at the same moment wins cleanly: the row is skipped, never both
processed and quarantined. A crash (or `pg_terminate_backend`) between two statements
aborts the transaction: each row is untouched or fully quarantined.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

from psycopg import sql

from bot.config import Settings
from bot.errors import NotFound, Refused, UsageError
from bot.patterns import UserPattern
from bot.queues.backend import Checkpoint, no_checkpoint
from bot.queues.bullmq.quarantine import matches_everything
from bot.queues.keys import COUNT_STATES, QueueRef
from bot.queues.models import (
    BulkQuarantineResult,
    DlqEntry,
    DlqListing,
    FailureSample,
    JobDetail,
    JobMove,
    MatchPreview,
    ProbeResult,
    QueueSnapshot,
    QueueWork,
    ReplayedJob,
    ReplayResult,
    Tally,
)
from bot.queues.postgres.connection import Database
from bot.queues.postgres.layout import KIND, JobTable
from bot.queues.postgres.schema import DlqSetup, Shapes, check_jobs_table, init_dlq, read_shapes
from bot.queues.postgres.statements import Statements, ms

PAGE_SIZE = 500
"""Failed rows read per statement when matching a pattern."""
BATCH_SIZE = 500
"""Rows changed per transaction: the locks a batch holds last one round trip or three."""
REASON_CHARS = 2_000


def reason_text(raw: object) -> str:
    """What a row's `last_error` says, as a person reads it: a JSON string as itself, an
    object's `message`/`reason`/`error`, else the JSON (or the text) as stored."""
    value: object = raw
    if isinstance(raw, str) and raw[:1] in '{["':
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
    if value is None:
        return ""
    if isinstance(value, str):
        return value[:REASON_CHARS]
    if isinstance(value, dict):
        for key in ("message", "reason", "error", "msg"):
            found = value.get(key)
            if isinstance(found, str) and found:
                return found[:REASON_CHARS]
    return json.dumps(value, separators=(",", ":"), default=str)[:REASON_CHARS]


def _json_value(raw: object) -> Any:
    """A JSON column as Python (psycopg already loads json/jsonb; text is tried)."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


class PostgresBackend:
    kind = KIND

    def __init__(
        self,
        db: Database,
        layout: JobTable,
        *,
        pause_sql: str | None = None,
        resume_sql: str | None = None,
        paused_sql: str | None = None,
    ) -> None:
        self.db = db
        self.layout = layout
        self.pause_sql = pause_sql
        self.resume_sql = resume_sql
        self.paused_sql = paused_sql
        self.ref = QueueRef(KIND, layout.name, layout.name)
        self._shapes: Shapes | None = None
        self._probe_lock = asyncio.Lock()
        self._last_probe_ms: int | None = None
        self._finished = {"completed": 0, "failed": 0}

    @classmethod
    def from_settings(cls, settings: Settings) -> PostgresBackend | None:
        """The DB queue QUEUE_JOBS_DATABASE_URL names, or None when it is unset."""
        url = settings.queue_jobs_database_url
        if url is None:
            return None
        db = Database(
            url,
            location=settings.queue_jobs_location(),
            statement_timeout_ms=settings.queue_jobs_statement_timeout_ms,
        )
        return cls(
            db,
            JobTable.from_settings(settings),
            pause_sql=settings.queue_jobs_pause_sql,
            resume_sql=settings.queue_jobs_resume_sql,
            paused_sql=settings.queue_jobs_paused_sql,
        )

    async def close(self) -> None:
        await self.db.close()

    # --- names -------------------------------------------------------------------------

    def owns(self, word: str) -> bool:
        return word in (self.layout.name, self.layout.table, self.ref.full)

    async def queues(self, *, refresh: bool = False) -> list[QueueRef]:
        return [self.ref]

    async def require_queue(self, word: str) -> QueueRef:
        if not self.owns(word):
            raise NotFound(f"'{word}' is not the DB queue '{self.layout.name}'")
        return self.ref

    def dlq_shown(self, word: str) -> str:
        return self.layout.dlq_table

    async def shapes(self, *, refresh: bool = False) -> Shapes:
        """The tables' columns, read once (again when `refresh`: after `db init-dlq`)."""
        if self._shapes is None or refresh:
            shapes = await read_shapes(self.db, self.layout)
            check_jobs_table(shapes, self.layout, self.db.location)
            self._shapes = shapes
        return self._shapes

    async def init_dlq(self) -> DlqSetup:
        """`queueops db init-dlq`: the DLQ table, created only when asked (schema.init_dlq)."""
        setup = await init_dlq(self.db, self.layout, await self.shapes(refresh=True))
        await self.shapes(refresh=True)
        return setup

    async def statements(self) -> Statements:
        return Statements(self.layout, await self.shapes(), paused_sql=self.paused_sql)

    async def _require_dlq(self) -> Statements:
        st = await self.statements()
        if not st.shapes.dlq.exists:
            st = Statements(
                self.layout, await self.shapes(refresh=True), paused_sql=self.paused_sql
            )
        if not st.shapes.dlq.exists:
            raise Refused(
                f"the DLQ table {self.layout.dlq_table} does not exist; create it with "
                "`queueops db init-dlq` (QUEUE_JOBS_DLQ_TABLE names it)"
            )
        return st

    # --- reads -------------------------------------------------------------------------

    async def snapshot(
        self, names: Sequence[str] | None = None, *, now_ms: int | None = None
    ) -> list[QueueSnapshot]:
        for word in names or ():
            await self.require_queue(word)
        st = await self.statements()
        async with self.db.transaction() as conn:
            (row,) = await self.db.fetch(conn, st.snapshot())
        groups, types, oldest, failures, dlq, paused, server_now = row
        now = now_ms if now_ms is not None else int(server_now)
        counts = dict.fromkeys(COUNT_STATES, 0)
        other: dict[str, int] = {}
        for status, delayed, n in groups:
            state = self.layout.state_of(status)
            if state == "waiting":
                counts["delayed" if delayed else "waiting"] += n
            elif state in ("active", "failed", "completed"):
                counts[state] += n
            elif state != "quarantined":  # counted in the DLQ depth (statements.py)
                other[status] = other.get(status, 0) + n
        recent = [
            FailureSample(
                job_id=str(i),
                name=str(k),
                attempts=int(a or 0),
                reason=reason_text(e),
                failed_at_ms=u,
            )
            for i, k, a, e, u in failures
        ]
        reasons = Counter(r.reason.split("\n")[0][:200] for r in recent)
        since = None
        if oldest is not None:
            since = oldest[1] if oldest[1] is not None else oldest[2]
        return [
            QueueSnapshot(
                name=self.layout.name,
                prefix=KIND,
                label=self.layout.name,
                kind=KIND,
                counts=counts,
                is_paused=bool(paused),
                oldest_waiting_age_ms=None if since is None else max(0, now - int(since)),
                oldest_waiting_id=None if oldest is None else str(oldest[0]),
                top_waiting_names=[Tally(key=str(k), count=int(n)) for k, n in types],
                top_failure_reasons=[Tally(key=k, count=n) for k, n in reasons.most_common(5)],
                dlq_depth=int(dlq),
                waiting_sample=counts["waiting"] + counts["delayed"],
                failed_sample=len(recent),
                recent_failures=recent[:10],
                other_statuses=other,
            )
        ]

    async def probe(
        self, names: Sequence[str] | None = None, *, now_ms: int | None = None
    ) -> ProbeResult:
        """One statement. `failed` and `completed` are this process's running totals of
        rows that finished since the previous probe (by `updated_at`), so the watcher and
        /metrics read rates from them as from BullMQ's counts; `counts` are exact now."""
        st = await self.statements()
        async with self._probe_lock:
            async with self.db.transaction() as conn:
                (row,) = await self.db.fetch(conn, st.probe(), {"since": self._last_probe_ms})
            groups, completed_new, failed_new, dlq, paused, server_now = row
            self._last_probe_ms = int(server_now)
            self._finished["completed"] += int(completed_new)
            self._finished["failed"] += int(failed_new)
        counts = dict.fromkeys(("waiting", "delayed", "active", "failed"), 0)
        oldest: int | None = None
        for status, due, n, since in groups:
            state = self.layout.state_of(status)
            if state == "waiting":
                counts["waiting" if due else "delayed"] += n
                if due and since is not None:
                    oldest = since if oldest is None else min(oldest, since)
            elif state in counts:
                counts[state] += n
        work = QueueWork(
            name=self.layout.name,
            prefix=KIND,
            label=self.layout.name,
            is_paused=bool(paused),
            ready=counts["waiting"],
            due_delayed=0,
            stalled=0,
            failed=self._finished["failed"],
            completed=self._finished["completed"],
            dlq_depth=int(dlq),
            oldest_runnable_since_ms=oldest,
            counts=counts,
            dlq_shown=self.layout.dlq_table,
        )
        return ProbeResult(queues=[work], at_ms=now_ms if now_ms is not None else int(server_now))

    async def job(self, queue: str, job_id: str) -> JobDetail:
        await self.require_queue(queue)
        st = await self.statements()
        c = st.c
        query = sql.SQL(
            "SELECT {id}::text, {ty}::text, {st}::text, {payload}, {ra}, {ca}, {ua}, {att}, {le},"
            " {in_dlq}, coalesce({ra_} > now(), false) FROM {t} WHERE {id} = %s"
        ).format(
            id=c("id"),
            ty=c("type"),
            st=c("status"),
            payload=c("payload"),
            ra=ms(c("run_after")),
            ca=ms(c("created_at")),
            ua=ms(c("updated_at")),
            att=st.opt("attempts", "0"),
            le=st.opt("last_error"),
            in_dlq=sql.SQL("NOT {}").format(st.not_quarantined),
            ra_=c("run_after"),
            t=st.t,
        )
        async with self.db.transaction() as conn:
            rows = await self.db.fetch(conn, query, [job_id])
        if not rows:
            raise NotFound(f"job {job_id} is not in '{self.layout.name}'")
        ident, kind, status, payload, ra, ca, ua, attempts, last_error, in_dlq, later = rows[0]
        state = self.layout.state_of(status)
        if state == "waiting" and later:
            state = "delayed"
        return JobDetail(
            name=self.layout.name,
            prefix=KIND,
            label=self.layout.name,
            kind=KIND,
            job_id=ident,
            state=state or status,
            status=status,
            job_name=kind,
            data=_json_value(payload),
            attempts=int(attempts or 0),
            failed_reason=reason_text(last_error) or None,
            created_ms=ca,
            run_after_ms=ra,
            updated_ms=ua,
            in_dlq=bool(in_dlq),
            opts={"last_error": _json_value(last_error)} if last_error is not None else {},
        )

    # --- quarantine --------------------------------------------------------------------

    async def _quarantine_rows(
        self,
        conn: Any,
        st: Statements,
        ids: list[Any],
        *,
        reason: str,
        actor: str,
        checkpoint: Checkpoint,
    ) -> set[Any]:
        """The runbook's DLQ procedure on rows this transaction holds locked: mark each `failed`
        with its original status (and error) in `last_error`, then copy it to the DLQ."""
        c = st.c
        assignments = [
            sql.SQL("{} = {}").format(c("status"), sql.Literal(self.layout.quarantine_word)),
            sql.SQL("{} = now()").format(c("updated_at")),
        ]
        if st.has("last_error"):
            kind = st.shapes.jobs.type_of(self.layout.column_name("last_error"))
            assignments.append(
                sql.SQL(
                    "{le} = (jsonb_build_object('reason', %(reason)s::text,"
                    " 'original_status', {st}, 'original_error', to_jsonb({le}),"
                    " 'quarantined_by', %(actor)s::text, 'quarantined_at', now()))::{kind}"
                ).format(le=c("last_error"), st=c("status"), kind=sql.SQL(kind))
            )
        # The DLQ check again, in a statement of its own: the lock query's snapshot may
        # predate another replica's commit of the same rows (under READ COMMITTED a row
        # lock re-reads the row, not the DLQ), and a new statement sees that commit.
        mark = sql.SQL(
            "UPDATE {t} SET {set} WHERE {id} = ANY(%(ids)s) AND {nq} RETURNING {id}"
        ).format(t=st.t, set=sql.SQL(", ").join(assignments), id=c("id"), nq=st.not_quarantined)
        params: dict[str, Any] = {"ids": ids, "reason": reason, "actor": actor}
        marked = [row[0] for row in await self.db.fetch(conn, mark, params)]
        await checkpoint("marked")
        if not marked:
            return set()
        params["ids"] = marked
        dlq_id = st.shapes.dlq.columns["id"]
        generated = not dlq_id.has_default
        copy = sql.SQL(
            "INSERT INTO {dlq} ({cols}) SELECT {vals} FROM {t} WHERE {id} = ANY(%(ids)s)"
        ).format(
            dlq=st.dlq,
            cols=sql.SQL(", ").join(
                sql.Identifier(n)
                for n in (
                    *(["id"] if generated else []),
                    "original_job_id",
                    "type",
                    "payload",
                    "reason",
                    "created_at",
                )
            ),
            vals=sql.SQL(", ").join(
                [
                    *([sql.SQL("gen_random_uuid()")] if generated else []),
                    c("id"),
                    c("type"),
                    c("payload"),
                    sql.SQL("%(reason)s::text"),
                    sql.SQL("now()"),
                ]
            ),
            t=st.t,
            id=c("id"),
        )
        await self.db.fetch(conn, copy, params)
        await checkpoint("copied")
        return set(marked)

    async def quarantine(
        self,
        queue: str,
        job_id: str,
        *,
        reason: str,
        actor: str,
        deep: bool = False,
        scan_bound: int = 0,
    ) -> JobMove:
        """One row to the DLQ: refused while it runs (its worker holds it), when it is done,
        already quarantined, or locked by a worker claiming it right now."""
        await self.require_queue(queue)
        st = await self._require_dlq()
        c = st.c
        lock = sql.SQL(
            "SELECT {id}, {st}::text, NOT {nq} FROM {t} WHERE {id} = %s FOR UPDATE SKIP LOCKED"
        ).format(id=c("id"), st=c("status"), nq=st.not_quarantined, t=st.t)
        async with self.db.transaction() as conn:
            rows = await self.db.fetch(conn, lock, [job_id])
            if not rows:
                seen = await self.db.fetch(
                    conn,
                    sql.SQL("SELECT {st}::text FROM {t} WHERE {id} = %s").format(
                        st=c("status"), t=st.t, id=c("id")
                    ),
                    [job_id],
                )
                if not seen:
                    return _not_moved(job_id, "missing", f"job {job_id} is not in '{queue}'")
                return _not_moved(
                    job_id,
                    "locked",
                    f"job {job_id} is locked by another transaction (a worker claiming it); "
                    "nothing changed, try again",
                )
            ident, status, already = rows[0]
            state = self.layout.state_of(status)
            if already:
                return _not_moved(
                    job_id, "quarantined", f"job {job_id} is already in {self.layout.dlq_table}"
                )
            if state == "active":
                return _not_moved(
                    job_id,
                    "active",
                    f"job {job_id} is running (status '{status}'): its worker holds it; "
                    "quarantine it once it fails or finishes",
                )
            if state == "completed":
                return _not_moved(
                    job_id, "completed", f"job {job_id} is done (status '{status}'); nothing to do"
                )
            marked = await self._quarantine_rows(
                conn, st, [ident], reason=reason, actor=actor, checkpoint=no_checkpoint
            )
            if not marked:
                return _not_moved(
                    job_id, "quarantined", f"job {job_id} is already in {self.layout.dlq_table}"
                )
        return JobMove(job_id=job_id, moved=True, outcome=f"moved:{status}", from_state=status)

    async def _matching_pages(
        self, st: Statements, pattern: UserPattern
    ) -> AsyncIterator[list[tuple[Any, str, str, bool]]]:
        """Pages of failed, not yet quarantined rows, newest first (keyset on updated_at and
        id: a row quarantined meanwhile gets a newer updated_at and is not read again), each
        as [(id, id text, reason, matched)]; RE2 matches off the event loop (bot.patterns)."""
        c = st.c
        after: tuple[Any, Any] | None = None
        everything = matches_everything(pattern)
        while True:
            cursor: sql.Composable = sql.SQL("")
            params: dict[str, Any] = {"n": PAGE_SIZE}
            if after is not None:
                cursor = sql.SQL(" AND ({t}.{ua}, {t}.{id}) < (%(ua)s, %(id)s)").format(
                    t=st.t, ua=c("updated_at"), id=c("id")
                )
                params |= {"ua": after[0], "id": after[1]}
            page = sql.SQL(
                "SELECT {id}, {id}::text, {le}::text, {ua} FROM {t}"
                " WHERE {failed} AND {nq}{cursor} ORDER BY {t}.{ua} DESC, {t}.{id} DESC"
                " LIMIT %(n)s"
            ).format(
                id=c("id"),
                le=st.opt("last_error"),
                ua=c("updated_at"),
                t=st.t,
                failed=st.state("failed"),
                nq=st.not_quarantined,
                cursor=cursor,
            )
            async with self.db.transaction() as conn:
                rows = await self.db.fetch(conn, page, params)
            if not rows:
                return
            reasons = [reason_text(r[2]) for r in rows]
            matched = [True] * len(rows) if everything else await pattern.matching(reasons)
            yield [(r[0], r[1], why, m) for r, why, m in zip(rows, reasons, matched, strict=True)]
            if len(rows) < PAGE_SIZE:
                return
            after = (rows[-1][3], rows[-1][0])

    async def preview_failed_matching(
        self, queue: str, pattern: UserPattern, *, limit: int
    ) -> MatchPreview:
        await self.require_queue(queue)
        st = await self._require_dlq()
        count = read = 0
        sample: list[tuple[str, str]] = []
        async for page in self._matching_pages(st, pattern):
            read += len(page)
            for _, text_id, why, matched in page:
                if matched and count < limit:
                    count += 1
                    if len(sample) < 15:
                        sample.append((text_id, why))
            if count >= limit:
                break
        return MatchPreview(count, read, sample, counted_without_reading=False)

    async def quarantine_matching(
        self,
        queue: str,
        pattern: UserPattern,
        *,
        limit: int,
        reason: str,
        actor: str,
        batch_size: int | None = None,
        checkpoint: Checkpoint = no_checkpoint,
    ) -> BulkQuarantineResult:
        """Up to `limit` failed rows whose error matches, newest first, in transactions of
        `batch_size` rows: each batch locks its rows with SKIP LOCKED, keeps those still
        failed and not quarantined, and moves them (row marked + DLQ copy) or none."""
        await self.require_queue(queue)
        st = await self._require_dlq()
        size = batch_size or BATCH_SIZE
        moved: list[JobMove] = []
        skipped: list[JobMove] = []
        scanned = matched = batches = 0
        pending: list[tuple[Any, str]] = []

        async def flush() -> None:
            nonlocal batches
            if not pending:
                return
            batch = pending[:]
            pending.clear()
            batches += 1
            taken = await self._lock_failed(
                st, batch, reason=reason, actor=actor, checkpoint=checkpoint
            )
            for native, text_id in batch:
                if native in taken:
                    moved.append(
                        JobMove(
                            job_id=text_id, moved=True, outcome="moved:failed", from_state="failed"
                        )
                    )
                else:
                    skipped.append(
                        _not_moved(
                            text_id,
                            "changed",
                            "no longer failed, or a worker holds it (it was skipped)",
                        )
                    )

        async for page in self._matching_pages(st, pattern):
            for native, text_id, _, hit in page:
                scanned += 1
                if not hit or matched >= limit:
                    continue
                matched += 1
                pending.append((native, text_id))
                if len(pending) >= size:
                    await flush()
            if matched >= limit:
                break
        await flush()
        return BulkQuarantineResult(
            queue=self.layout.name,
            dlq=self.layout.dlq_table,
            pattern=pattern.source,
            scanned=scanned,
            matched=matched,
            moved=moved,
            skipped=skipped,
            batches=batches,
        )

    async def _lock_failed(
        self,
        st: Statements,
        batch: list[tuple[Any, str]],
        *,
        reason: str,
        actor: str,
        checkpoint: Checkpoint,
    ) -> set[Any]:
        """One transaction: lock the batch's rows that are still failed and not in the DLQ
        (SKIP LOCKED: a row a worker holds is left to it), quarantine exactly those."""
        c = st.c
        lock = sql.SQL(
            "SELECT {id} FROM {t} WHERE {id} = ANY(%s) AND {failed} AND {nq} FOR UPDATE SKIP LOCKED"
        ).format(id=c("id"), t=st.t, failed=st.state("failed"), nq=st.not_quarantined)
        async with self.db.transaction() as conn:
            rows = await self.db.fetch(conn, lock, [[native for native, _ in batch]])
            await checkpoint("locked")
            taken = [r[0] for r in rows]
            if not taken:
                return set()
            return await self._quarantine_rows(
                conn, st, taken, reason=reason, actor=actor, checkpoint=checkpoint
            )

    # --- the DLQ -----------------------------------------------------------------------

    def _dlq_select(
        self, st: Statements, where: sql.Composable, tail: sql.Composable
    ) -> sql.Composed:
        c = st.c
        replayed = (
            sql.SQL("d.replayed_at") if st.shapes.replayed_at else sql.SQL("NULL::timestamptz")
        )
        return sql.SQL(
            "SELECT d.id::text, d.original_job_id::text, d.type::text, d.payload, d.reason::text,"
            " {d_ca}, {att}, {le}, {st_}::text, {replayed} FROM {dlq} d"
            " LEFT JOIN {t} j ON j.{id} = d.original_job_id WHERE {where} {tail}"
        ).format(
            d_ca=ms(sql.SQL("d.created_at")),
            att=sql.SQL("j.{}").format(c("attempts")) if st.has("attempts") else sql.SQL("0"),
            le=sql.SQL("j.{}").format(c("last_error")) if st.has("last_error") else sql.SQL("NULL"),
            st_=sql.SQL("j.{}").format(c("status")),
            replayed=replayed,
            dlq=st.dlq,
            t=st.t,
            id=c("id"),
            where=where,
            tail=tail,
        )

    def _entry(self, row: tuple[Any, ...]) -> DlqEntry:
        dlq_id, original, kind, payload, reason, at, attempts, last_error, _status, _ = row
        error = _json_value(last_error)
        info = error if isinstance(error, dict) else {}
        original_error = info.get("original_error")
        return DlqEntry(
            job_id=str(original),
            name=str(kind),
            data=_json_value(payload),
            opts={"dlqId": dlq_id},
            attempts_made=int(attempts or 0),
            failed_reason=reason,
            original_failed_reason=reason_text(original_error) or None,
            stacktrace=[],
            timestamp=None,
            processed_on=None,
            quarantined_at=at,
            quarantined_by=info.get("quarantined_by")
            if isinstance(info.get("quarantined_by"), str)
            else None,
            quarantine_reason=reason,
            from_state=info.get("original_status")
            if isinstance(info.get("original_status"), str)
            else None,
            from_queue=self.layout.name,
        )

    async def dlq_list(
        self, queue: str, *, limit: int = 20, oldest_first: bool = False
    ) -> DlqListing:
        await self.require_queue(queue)
        st = await self._require_dlq()
        order = "ASC" if oldest_first else "DESC"
        listing = self._dlq_select(
            st,
            sql.SQL("d.") + st.dlq_waiting if st.shapes.replayed_at else st.dlq_waiting,
            sql.SQL(f"ORDER BY d.created_at {order}, d.id {order} LIMIT %s"),
        )
        async with self.db.transaction() as conn:
            rows = await self.db.fetch(conn, listing, [limit])
            (depth,) = (await self.db.fetch(conn, sql.SQL("SELECT {}").format(st.dlq_depth)))[0]
        return DlqListing(
            queue=self.layout.name,
            dlq=self.layout.dlq_table,
            depth=int(depth),
            entries=[self._entry(r) for r in rows],
        )

    async def dlq_show(self, queue: str, job_id: str) -> DlqEntry:
        await self.require_queue(queue)
        st = await self._require_dlq()
        waiting = sql.SQL("d.") + st.dlq_waiting if st.shapes.replayed_at else st.dlq_waiting
        query = self._dlq_select(
            st,
            sql.SQL("(d.original_job_id::text = %(id)s OR d.id::text = %(id)s) AND ") + waiting,
            sql.SQL("ORDER BY d.created_at DESC LIMIT 1"),
        )
        async with self.db.transaction() as conn:
            rows = await self.db.fetch(conn, query, {"id": job_id})
        if not rows:
            raise NotFound(f"job {job_id} is not in '{self.layout.dlq_table}'")
        return self._entry(rows[0])

    async def dlq_replay(
        self,
        queue: str,
        *,
        count: int,
        batch_size: int | None = None,
        checkpoint: Checkpoint = no_checkpoint,
        reset_attempts: bool = False,
    ) -> ReplayResult:
        """Canary re-enqueue of the `count` oldest DLQ rows: each original row goes back to
        pending (run_after now; attempts reset only with `reset_attempts`), or is inserted
        again from the DLQ copy when it is gone, and its DLQ row is marked replayed (or
        deleted, without `replayed_at`), in one transaction per batch. A row that is not
        failed any more (someone retried it) is left, with its DLQ entry, and said so."""
        await self.require_queue(queue)
        st = await self._require_dlq()
        if await self._paused():
            raise Refused(
                f"'{self.layout.name}' is paused (QUEUE_JOBS_PAUSED_SQL); resume it first, "
                "replayed jobs would not run"
            )
        await checkpoint("checked")
        size = min(batch_size or BATCH_SIZE, max(1, count))
        replayed: list[ReplayedJob] = []
        left: list[ReplayedJob] = []
        after: tuple[Any, Any] | None = None
        while len(replayed) < count:
            want = min(size, count - len(replayed))
            batch, after = await self._replay_batch(st, want, after, reset_attempts, checkpoint)
            if batch is None:
                break
            replayed += [j for j in batch if j.replayed]
            left += [j for j in batch if not j.replayed]
        return ReplayResult(
            queue=self.layout.name,
            dlq=self.layout.dlq_table,
            requested=count,
            replayed=replayed,
            left=left,
            dropped_options=[],
        )

    async def _replay_batch(
        self,
        st: Statements,
        want: int,
        after: tuple[Any, Any] | None,
        reset_attempts: bool,
        checkpoint: Checkpoint,
    ) -> tuple[list[ReplayedJob] | None, tuple[Any, Any] | None]:
        c = st.c
        cursor: sql.Composable = sql.SQL("")
        params: dict[str, Any] = {"n": want}
        if after is not None:
            cursor = sql.SQL(" AND (created_at, id) > (%(ca)s, %(id)s)")
            params |= {"ca": after[0], "id": after[1]}
        pick = sql.SQL(
            "SELECT id, original_job_id, original_job_id::text, type, payload, created_at"
            " FROM {dlq} WHERE {waiting}{cursor} ORDER BY created_at, id LIMIT %(n)s"
            " FOR UPDATE SKIP LOCKED"
        ).format(dlq=st.dlq, waiting=st.dlq_waiting, cursor=cursor)
        async with self.db.transaction() as conn:
            picked = await self.db.fetch(conn, pick, params)
            if not picked:
                return None, after
            originals = {
                r[0]: r[1]
                for r in await self.db.fetch(
                    conn,
                    sql.SQL(
                        "SELECT {id}, {st}::text FROM {t} WHERE {id} = ANY(%s) FOR UPDATE"
                    ).format(id=c("id"), st=c("status"), t=st.t),
                    [[r[1] for r in picked]],
                )
            }
            back: list[Any] = []
            again: list[tuple[Any, ...]] = []
            done_dlq: list[Any] = []
            jobs: list[ReplayedJob] = []
            for dlq_id, original, text_id, kind, _payload, _ in picked:
                status = originals.get(original)
                if status is None:
                    again.append((dlq_id, original, text_id))
                elif self.layout.state_of(status) in ("failed", "quarantined"):
                    back.append(original)
                else:
                    jobs.append(
                        ReplayedJob(
                            job_id=text_id,
                            name=str(kind),
                            replayed=False,
                            problem=f"is '{status}' now, not failed: left in the DLQ",
                        )
                    )
                    continue
                done_dlq.append(dlq_id)
                jobs.append(ReplayedJob(job_id=text_id, name=str(kind), replayed=True))
            if back:
                sets = [
                    sql.SQL("{} = {}").format(c("status"), sql.Literal(self.layout.waiting_word)),
                    sql.SQL("{} = now()").format(c("run_after")),
                    sql.SQL("{} = now()").format(c("updated_at")),
                ]
                if reset_attempts and st.has("attempts"):
                    sets.append(sql.SQL("{} = 0").format(c("attempts")))
                await self.db.fetch(
                    conn,
                    sql.SQL("UPDATE {t} SET {sets} WHERE {id} = ANY(%s)").format(
                        t=st.t, sets=sql.SQL(", ").join(sets), id=c("id")
                    ),
                    [back],
                )
            await checkpoint("requeued")
            if again:
                await self.db.fetch(
                    conn,
                    sql.SQL(
                        "INSERT INTO {t} ({id}, {ty}, {payload}, {st}, {ra}, {ca}, {ua})"
                        " SELECT original_job_id, type, payload, {pending}, now(), now(), now()"
                        " FROM {dlq} WHERE id = ANY(%s)"
                    ).format(
                        t=st.t,
                        id=c("id"),
                        ty=c("type"),
                        payload=c("payload"),
                        st=c("status"),
                        ra=c("run_after"),
                        ca=c("created_at"),
                        ua=c("updated_at"),
                        pending=sql.Literal(self.layout.waiting_word),
                        dlq=st.dlq,
                    ),
                    [[a[0] for a in again]],
                )
            if done_dlq:
                mark = (
                    sql.SQL("UPDATE {} SET replayed_at = now() WHERE id = ANY(%s)")
                    if st.shapes.replayed_at
                    else sql.SQL("DELETE FROM {} WHERE id = ANY(%s)")
                ).format(st.dlq)
                await self.db.fetch(conn, mark, [done_dlq])
            await checkpoint("marked")
        last = picked[-1]
        return jobs, (last[5], last[0])

    # --- control -----------------------------------------------------------------------

    async def _paused(self) -> bool:
        if self.paused_sql is None:
            return False
        async with self.db.transaction() as conn:
            rows = await self.db.fetch(
                conn, sql.SQL("SELECT coalesce(({}), false)").format(sql.SQL(self.paused_sql))
            )
        return bool(rows and rows[0][0])

    async def _run_configured(self, statement: str | None, verb: str, variable: str) -> bool:
        if statement is None:
            raise Refused(
                f"'{self.layout.name}' is a table: it has no {verb}; set {variable} to the "
                f"statement that {verb}s its producers or workers (a feature flag)"
            )
        was = await self._paused()
        async with self.db.transaction() as conn:
            await self.db.fetch(conn, sql.SQL(statement))
        return was

    async def pause(self, queue: str) -> bool:
        await self.require_queue(queue)
        return await self._run_configured(self.pause_sql, "pause", "QUEUE_JOBS_PAUSE_SQL")

    async def resume(self, queue: str) -> bool:
        await self.require_queue(queue)
        return await self._run_configured(self.resume_sql, "resume", "QUEUE_JOBS_RESUME_SQL")

    async def promote_due(self, queue: str) -> int:
        """Nothing to do: a pending row is runnable as soon as its run_after has passed."""
        await self.require_queue(queue)
        return 0

    async def retry(self, queue: str, *, count: int | None) -> int:
        """Failed rows (not quarantined) back to pending, oldest failure first, in
        transactions of BATCH_SIZE; rows a worker holds are skipped."""
        await self.require_queue(queue)
        if count is not None and count < 1:
            raise UsageError("--count must be at least 1")
        st = await self.statements()
        c = st.c
        done = 0
        while count is None or done < count:
            n = BATCH_SIZE if count is None else min(BATCH_SIZE, count - done)
            statement = sql.SQL(
                "WITH picked AS (SELECT {id} FROM {t} WHERE {failed} AND {nq}"
                " ORDER BY {ua} LIMIT %s FOR UPDATE SKIP LOCKED)"
                " UPDATE {t} SET {st} = {pending}, {ra} = now(), {ua} = now()"
                " FROM picked WHERE {t}.{id} = picked.{id} RETURNING 1"
            ).format(
                id=c("id"),
                t=st.t,
                failed=st.state("failed"),
                nq=st.not_quarantined,
                ua=c("updated_at"),
                st=c("status"),
                pending=sql.Literal(self.layout.waiting_word),
                ra=c("run_after"),
            )
            async with self.db.transaction() as conn:
                rows = await self.db.fetch(conn, statement, [n])
            done += len(rows)
            if len(rows) < n:
                break
        return done


def _not_moved(job_id: str, outcome: str, problem: str) -> JobMove:
    return JobMove(job_id=job_id, moved=False, outcome=outcome, problem=problem)
