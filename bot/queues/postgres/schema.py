"""What the server holds: the job table's and the DLQ table's columns and their types.

Read once per process (one query to information_schema) and again after a statement failed
on a missing column or table, so a team can create the DLQ table (`queueops db init-dlq`)
or add `replayed_at` without restarting. The types matter: an id compared with a person's
text is cast to the id's type, `last_error` is written as what it is (jsonb, json or
text), and the DLQ row's id is generated only when its column has no default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import sql

from bot.errors import NotFound
from bot.queues.postgres.connection import Database
from bot.queues.postgres.layout import JobTable

REQUIRED = ("id", "type", "status", "payload", "run_after", "created_at", "updated_at")
"""Columns a DB queue needs; `attempts` and `last_error` are used when present."""
DLQ_REQUIRED = ("id", "original_job_id", "type", "payload", "reason", "created_at")


@dataclass(frozen=True)
class Column:
    type: str
    has_default: bool


@dataclass(frozen=True)
class TableShape:
    """The columns of one table, by name; empty when the table does not exist."""

    columns: dict[str, Column]

    @property
    def exists(self) -> bool:
        return bool(self.columns)

    def has(self, name: str) -> bool:
        return name in self.columns

    def type_of(self, name: str) -> str:
        return self.columns[name].type


@dataclass(frozen=True)
class Shapes:
    jobs: TableShape
    dlq: TableShape

    @property
    def replayed_at(self) -> bool:
        """The DLQ marks a replayed row (else a replay deletes it)."""
        return self.dlq.has("replayed_at")


async def read_shapes(db: Database, layout: JobTable) -> Shapes:
    """Both tables' columns in one query. A table named without a schema is looked for in
    the search path, as the statements will find it."""
    names: list[Any] = []
    for table in (layout.table, layout.dlq_table):
        schema, name = layout.split(table)
        names.append((schema, name))
    query = sql.SQL(
        "SELECT c.relname, n.nspname, a.attname, format_type(a.atttypid, a.atttypmod),"
        " a.atthasdef, c.oid = to_regclass(%s) AS is_jobs"
        " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid IN (to_regclass(%s), to_regclass(%s)) AND a.attnum > 0 AND NOT a.attisdropped"
    )
    jobs_ref = _regclass(names[0])
    dlq_ref = _regclass(names[1])
    async with db.transaction() as conn:
        rows = await db.fetch(conn, query, [jobs_ref, jobs_ref, dlq_ref])
    jobs: dict[str, Column] = {}
    dlq: dict[str, Column] = {}
    for _rel, _ns, column, type_name, has_default, is_jobs in rows:
        (jobs if is_jobs else dlq)[column] = Column(str(type_name), bool(has_default))
    return Shapes(TableShape(jobs), TableShape(dlq))


def _regclass(name: tuple[str | None, str]) -> str:
    """A name as to_regclass reads it: each part quoted, so case and odd names survive."""
    schema, table = name
    quoted = '"' + table.replace('"', '""') + '"'
    return quoted if schema is None else '"' + schema.replace('"', '""') + '".' + quoted


def check_jobs_table(shapes: Shapes, layout: JobTable, location: str) -> None:
    """NotFound naming what is missing: the table, or the columns the queue needs."""
    if not shapes.jobs.exists:
        raise NotFound(
            f"table {layout.table} does not exist in PostgreSQL at {location} (QUEUE_JOBS_TABLE)"
        )
    missing = [
        layout.column_name(c) for c in REQUIRED if not shapes.jobs.has(layout.column_name(c))
    ]
    if missing:
        raise NotFound(
            f"table {layout.table} has no column {', '.join(missing)} (QUEUE_JOBS_COLUMNS "
            "names the columns where they differ)"
        )


@dataclass(frozen=True)
class DlqSetup:
    """What `queueops db init-dlq` did, and what the job table still lacks."""

    table: str
    created: bool
    replayed_at: bool
    missing_indexes: list[str]


RECOMMENDED_INDEXES = (("status", "run_after"), ("status", "updated_at"))
"""The job table's indexes the statements are written for (statements.py, docs/postgres.md)."""


async def init_dlq(db: Database, layout: JobTable, shapes: Shapes) -> DlqSetup:
    """Create the DLQ table when it does not exist (with the job table's id, type and
    payload types, a `replayed_at` and the index the DLQ depth and replays read), in one
    transaction; and say which recommended indexes the job table lacks, as the statements
    that would create them (building an index on a busy table is the team's call)."""
    check_jobs_table(shapes, layout, db.location)
    jobs = shapes.jobs

    def type_of(ours: str) -> sql.SQL:
        return sql.SQL(jobs.type_of(layout.column_name(ours)))  # the server's own words

    name = layout.split(layout.dlq_table)[1]
    created = not shapes.dlq.exists
    async with db.transaction() as conn:
        if created:
            await db.fetch(
                conn,
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {dlq} ("
                    " id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
                    " original_job_id {id_type} NOT NULL,"
                    " type {type_type},"
                    " payload {payload_type},"
                    " reason text NOT NULL,"
                    " created_at timestamptz NOT NULL DEFAULT now(),"
                    " replayed_at timestamptz)"
                ).format(
                    dlq=layout.dlq_sql,
                    id_type=type_of("id"),
                    type_type=type_of("type"),
                    payload_type=type_of("payload"),
                ),
            )
            await db.fetch(
                conn,
                sql.SQL(
                    "CREATE INDEX IF NOT EXISTS {index} ON {dlq} (created_at, id)"
                    " WHERE replayed_at IS NULL"
                ).format(index=sql.Identifier(f"{name[:48]}_waiting_idx"), dlq=layout.dlq_sql),
            )
            await db.fetch(
                conn,
                sql.SQL(
                    "CREATE INDEX IF NOT EXISTS {index} ON {dlq} (original_job_id)"
                    " WHERE replayed_at IS NULL"
                ).format(index=sql.Identifier(f"{name[:48]}_original_idx"), dlq=layout.dlq_sql),
            )
        indexed = await db.fetch(
            conn,
            sql.SQL(
                "SELECT array_agg(a.attname::text ORDER BY k.n) FROM pg_index i"
                " CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)"
                " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
                " WHERE i.indrelid = to_regclass(%s) GROUP BY i.indexrelid"
            ),
            [_regclass(layout.split(layout.table))],
        )
    leading = [tuple(row[0]) for row in indexed if row[0]]
    missing: list[str] = []
    for columns in RECOMMENDED_INDEXES:
        theirs = tuple(layout.column_name(c) for c in columns)
        if not any(have[: len(theirs)] == theirs for have in leading):
            table_name = layout.split(layout.table)[1]
            missing.append(
                f"CREATE INDEX CONCURRENTLY {table_name}_{'_'.join(theirs)}_idx"
                f" ON {layout.table} ({', '.join(theirs)});"
            )
    after = await read_shapes(db, layout)
    return DlqSetup(
        table=layout.dlq_table,
        created=created,
        replayed_at=after.replayed_at,
        missing_indexes=missing,
    )
