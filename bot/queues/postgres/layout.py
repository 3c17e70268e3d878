"""JobTable: where the DB queue's jobs are and what their status words mean.

Defaults are exactly the queue-backlog runbook's: `queue_jobs(id, type, status, payload, run_after,
created_at, updated_at, attempts, last_error)`, `queue_jobs_dlq(id, original_job_id, type,
payload, reason, created_at)`, and its status words. Teams name these differently, so
every name comes from the configuration (QUEUE_JOBS_TABLE, QUEUE_JOBS_DLQ_TABLE,
QUEUE_JOBS_COLUMNS, QUEUE_JOBS_STATUSES).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from bot.config import Settings

DEFAULT_STATUSES: dict[str, tuple[str, ...]] = {
    "waiting": ("pending",),
    "active": ("running", "processing", "claimed"),
    "failed": ("failed",),
    "completed": ("done", "completed", "succeeded"),
    "quarantined": ("quarantined",),
}
KIND = "postgres"
"""The backend's name in `--json` (`"kind"`) and the prefix of a DB queue's full name."""


def _identifier(name: str) -> sql.Identifier:
    return sql.Identifier(*name.split("."))


@dataclass(frozen=True)
class JobTable:
    table: str = "queue_jobs"
    dlq_table: str = "queue_jobs_dlq"
    columns: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> JobTable:
        return cls(
            table=settings.queue_jobs_table,
            dlq_table=settings.queue_jobs_dlq_table,
            columns=dict(settings.queue_jobs_columns),
            statuses=dict(settings.queue_jobs_statuses),
            quarantine_status=settings.queue_jobs_quarantine_status,
        )

    @property
    def name(self) -> str:
        """The queue's name in commands and replies: the table's own name."""
        return self.table.rpartition(".")[2]

    def words(self, state: str) -> list[str]:
        """The status words of a state (waiting, active, failed, completed, quarantined)."""
        return list(self.statuses.get(state) or DEFAULT_STATUSES[state])

    def state_of(self, status: str) -> str | None:
        """The state a status word means, or None: a word outside the vocabulary."""
        for state in DEFAULT_STATUSES:
            if status in self.words(state):
                return state
        return None

    quarantine_status: str | None = None

    @property
    def failed_word(self) -> str:
        return self.words("failed")[0]

    @property
    def quarantine_word(self) -> str:
        """What a quarantine sets: the first failed word, as the runbook's procedure marks
        the row `failed`, unless QUEUE_JOBS_QUARANTINE_STATUS names a quarantined word
        (then a worker that retries failed rows never picks a quarantined one up)."""
        return self.quarantine_status or self.failed_word

    @property
    def waiting_word(self) -> str:
        """What a retry and a replay set."""
        return self.words("waiting")[0]

    def column_name(self, ours: str) -> str:
        return self.columns.get(ours, ours)

    def col(self, ours: str) -> sql.Identifier:
        """A column of the job table by queueops' name for it (`run_after`...)."""
        return sql.Identifier(self.column_name(ours))

    @property
    def table_sql(self) -> sql.Identifier:
        return _identifier(self.table)

    @property
    def dlq_sql(self) -> sql.Identifier:
        return _identifier(self.dlq_table)

    def split(self, table: str) -> tuple[str | None, str]:
        """(schema or None, table) of a configured table name."""
        schema, _, name = table.rpartition(".")
        return (schema or None), name
