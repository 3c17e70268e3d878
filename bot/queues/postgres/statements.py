"""Every statement the DB queue sends, composed from the configured names.

Names (tables, columns) enter as `sql.Identifier`, status words as `sql.Literal` (quoted by
psycopg: a status word is configuration, but quoting costs nothing), everything a person
typed as a parameter. Status words are written into the statement rather than passed as an
array so that one word compares with `=`: PostgreSQL then reads `(status, run_after)` in
index order for "the oldest pending row" instead of sorting every pending row.

The indexes these statements are written for (docs/postgres.md):
`(status, run_after)` for the counts, the oldest pending row and the tick's probe (an
index-only scan once the table is vacuumed), `(status, updated_at)` for the newest
failures and the tick's finished-since counts.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from bot.queues.postgres.layout import JobTable
from bot.queues.postgres.schema import Shapes

TOP_TYPES = 5
RECENT_FAILURES = 50


def ms(expr: sql.Composable) -> sql.Composed:
    """A timestamp as epoch milliseconds (what every record carries)."""
    return sql.SQL("(extract(epoch FROM {}) * 1000)::bigint").format(expr)


class Statements:
    def __init__(self, layout: JobTable, shapes: Shapes, *, paused_sql: str | None) -> None:
        self.layout = layout
        self.shapes = shapes
        self.paused_sql = paused_sql
        self.t = layout.table_sql
        self.dlq = layout.dlq_sql

    def c(self, ours: str) -> sql.Identifier:
        return self.layout.col(ours)

    def has(self, ours: str) -> bool:
        return self.shapes.jobs.has(self.layout.column_name(ours))

    def opt(self, ours: str, fallback: str = "NULL") -> sql.Composable:
        """An optional column (attempts, last_error), or `fallback` where the table has none."""
        return self.c(ours) if self.has(ours) else sql.SQL(fallback)

    def status_in(self, words: Sequence[str], column: sql.Composable | None = None) -> sql.Composed:
        col = column or self.c("status")
        if len(words) == 1:
            return sql.SQL("{} = {}").format(col, sql.Literal(words[0]))
        return sql.SQL("{} IN ({})").format(col, sql.SQL(", ").join(map(sql.Literal, words)))

    def state(self, state: str) -> sql.Composed:
        return self.status_in(self.layout.words(state))

    @property
    def due(self) -> sql.Composed:
        return sql.SQL("coalesce({} <= now(), true)").format(self.c("run_after"))

    def id_type(self) -> sql.SQL:
        """The id column's type as the server names it, to cast a person's text to."""
        return sql.SQL(self.shapes.jobs.type_of(self.layout.column_name("id")))

    @property
    def paused(self) -> sql.Composable:
        if self.paused_sql is None:
            return sql.SQL("false")
        return sql.SQL("coalesce(({}), false)").format(sql.SQL(self.paused_sql))

    @property
    def not_quarantined(self) -> sql.Composable:
        """A row with no DLQ entry waiting (a quarantined row stays `failed`, as the
        runbook's procedure leaves it)."""
        if not self.shapes.dlq.exists:
            return sql.SQL("true")
        pending = sql.SQL(" AND d.replayed_at IS NULL") if self.shapes.replayed_at else sql.SQL("")
        return sql.SQL(
            "NOT EXISTS (SELECT 1 FROM {dlq} d WHERE d.original_job_id = {t}.{id}{pending})"
        ).format(dlq=self.dlq, t=self.t, id=self.c("id"), pending=pending)

    @property
    def dlq_waiting(self) -> sql.Composable:
        """The DLQ rows not replayed yet (all of them where replays delete)."""
        return sql.SQL("replayed_at IS NULL") if self.shapes.replayed_at else sql.SQL("true")

    @property
    def dlq_depth(self) -> sql.Composable:
        if not self.shapes.dlq.exists:
            return sql.SQL("0")
        return sql.SQL("(SELECT count(*) FROM {} WHERE {})").format(self.dlq, self.dlq_waiting)

    def snapshot(self) -> sql.Composed:
        """The whole snapshot in one statement: counts by status with the delayed split
        (the queue-backlog runbook's GROUP BY status), top types among pending, the oldest runnable
        pending row, the newest failures, the DLQ depth, paused, and the server's clock."""
        c = self.c
        waiting = self.state("waiting")
        return sql.SQL(
            "SELECT"
            " (SELECT coalesce(json_agg(json_build_array(s, d, n)), '[]') FROM"
            "  (SELECT {st}::text AS s, ({waiting} AND NOT {due}) AS d, count(*) AS n"
            "   FROM {t} GROUP BY 1, 2) g),"
            " (SELECT coalesce(json_agg(json_build_array(k, n) ORDER BY n DESC, k), '[]') FROM"
            "  (SELECT {ty}::text AS k, count(*) AS n FROM {t} WHERE {waiting}"
            "   GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {top}) g),"
            " (SELECT json_build_array({id}::text, {ra_ms}, {ca_ms}) FROM {t}"
            "  WHERE {waiting} AND {due} ORDER BY {ra}, {ca} LIMIT 1),"
            " (SELECT coalesce(json_agg(json_build_array(i, k, a, e, u) ORDER BY u DESC), '[]')"
            "  FROM (SELECT {id}::text AS i, {ty}::text AS k, {att} AS a, {le}::text AS e,"
            "   {ua_ms} AS u FROM {t} WHERE {failed} ORDER BY {ua} DESC LIMIT {recent}) f),"
            " {dlq} + {alone}, {paused}, {now}"
        ).format(
            st=c("status"),
            waiting=waiting,
            due=self.due,
            t=self.t,
            ty=c("type"),
            top=sql.Literal(TOP_TYPES),
            id=c("id"),
            ra=c("run_after"),
            ca=c("created_at"),
            ra_ms=ms(c("run_after")),
            ca_ms=ms(c("created_at")),
            att=self.opt("attempts", "0"),
            le=self.opt("last_error"),
            ua=c("updated_at"),
            ua_ms=ms(c("updated_at")),
            failed=self.state("failed"),
            recent=sql.Literal(RECENT_FAILURES),
            dlq=self.dlq_depth,
            alone=self.quarantined_alone,
            paused=self.paused,
            now=ms(sql.SQL("now()")),
        )

    @property
    def quarantined_alone(self) -> sql.Composed:
        """Rows in a quarantined status without a DLQ entry (a team that marks rows by
        hand): counted in the DLQ depth, once. Ours have an entry and count there."""
        return sql.SQL("(SELECT count(*) FROM {t} WHERE {quarantined} AND {nq})").format(
            t=self.t, quarantined=self.state("quarantined"), nq=self.not_quarantined
        )

    def probe(self) -> sql.Composed:
        """The tick's one statement: the rows that are work (pending, running, failed) by
        status and due, with the oldest run_after (index-only on
        `(status, run_after)`), the rows finished since the last probe (`%(since)s`, epoch
        ms; a range of `(status, updated_at)`), the DLQ depth, paused, the clock."""
        layout = self.layout
        work = [w for s in ("waiting", "active", "failed") for w in layout.words(s)]
        since = sql.SQL("to_timestamp(%(since)s / 1000.0)")
        return sql.SQL(
            "SELECT"
            " (SELECT coalesce(json_agg(json_build_array(s, d, n, o)), '[]') FROM"
            "  (SELECT {st}::text AS s, {due} AS d, count(*) AS n, {oldest} AS o"
            "   FROM {t} WHERE {work} GROUP BY 1, 2) g),"
            " (SELECT count(*) FROM {t} WHERE {completed} AND {ua} > {since}),"
            " (SELECT count(*) FROM {t} WHERE {failed} AND {ua} > {since}),"
            " {dlq} + {alone}, {paused}, {now}"
        ).format(
            st=self.c("status"),
            due=self.due,
            oldest=ms(sql.SQL("min({})").format(self.c("run_after"))),
            t=self.t,
            work=self.status_in(work),
            completed=self.state("completed"),
            failed=self.state("failed"),
            ua=self.c("updated_at"),
            since=since,
            dlq=self.dlq_depth,
            alone=self.quarantined_alone,
            paused=self.paused,
            now=ms(sql.SQL("now()")),
        )
