"""What the adapter returns: plain pydantic records, camelCase in JSON like npm bullmq."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from bot.queues.keys import DEFAULT_PREFIX


class Record(BaseModel):
    """Base: camelCase aliases for JSON, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class Tally(Record):
    """One row of a top-N: a job name or a failure reason and how often it was seen."""

    key: str
    count: int


class QueueRecord(Record):
    """What a record of one queue names it by: its BullMQ name and prefix, and how replies
    show it (the short name where unique, else the full name; not in `--json`)."""

    name: str
    prefix: str = Field(
        DEFAULT_PREFIX, description="its key prefix: the queue is `<prefix>:<name>`"
    )
    label: str = Field("", exclude=True, description="how replies show it (`shown`)")

    @property
    def shown(self) -> str:
        return self.label or self.name

    @property
    def full(self) -> str:
        return f"{self.prefix}:{self.name}"


class FailureSample(Record):
    """One recent failure, newest first: which job, what it was, and why it failed."""

    job_id: str
    name: str
    attempts: int
    reason: str
    failed_at_ms: int | None


class QueueSnapshot(QueueRecord):
    """One queue at a glance; `counts` has exactly npm bullmq getJobCounts()'s eight keys."""

    counts: dict[str, int]
    is_paused: bool
    oldest_waiting_age_ms: int | None
    top_waiting_names: list[Tally]
    top_failure_reasons: list[Tally]
    dlq_depth: int
    waiting_sample: int = Field(description="how many of the next-to-run jobs were sampled")
    failed_sample: int = Field(description="how many of the newest failed jobs were sampled")
    kind: str = Field("bullmq", description='"bullmq", or "postgres" for a DB-backed queue')
    oldest_waiting_id: str | None = Field(
        None, description="the job that has waited longest (a DB queue's oldest pending row)"
    )
    recent_failures: list[FailureSample] = Field(
        default_factory=list, description="the newest failures with their error (DB queue)"
    )
    other_statuses: dict[str, int] = Field(
        default_factory=dict,
        description="a DB queue's rows in statuses outside the vocabulary, by status",
    )


class QueueWork(QueueRecord):
    """What the probe saw in one queue."""

    is_paused: bool
    ready: int
    due_delayed: int
    stalled: int
    failed: int = 0
    completed: int = 0
    dlq_depth: int = 0
    oldest_runnable_since_ms: int | None = None
    counts: dict[str, int] = Field(
        default_factory=dict, description="jobs by state, as QueueSnapshot.counts has them"
    )
    dlq_shown: str | None = Field(
        None, exclude=True, description="where its DLQ is, when not `<queue><suffix>`"
    )

    @property
    def runnable(self) -> bool:
        """A drain would process something here now."""
        return not self.is_paused and (self.ready + self.due_delayed + self.stalled) > 0


class ProbeResult(Record):
    queues: list[QueueWork]
    at_ms: int = 0
    extras: list[int | list[str | int]] = []

    @property
    def runnable(self) -> list[str]:
        """The queues a drain would do work in now, as replies show them."""
        return [q.shown for q in self.queues if q.runnable]


class JobMove(Record):
    """What happened to one job in a quarantine."""

    job_id: str
    moved: bool
    outcome: str = Field(description="the script's word: moved:<state>, missing, active, ...")
    from_state: str | None = None
    problem: str | None = None
    list_end: str | None = Field(
        None, description="a job from a list: found from its 'oldest' or 'newest' end"
    )
    depth: int | None = Field(None, description="how many jobs sat between it and that end")
    scanned: int | None = Field(None, description="list entries Redis compared to find it")
    list_name: str | None = Field(None, description="too deep: the list it may be in")
    list_length: int | None = None
    scan_bound: int | None = Field(None, description="entries looked at from each end")
    estimated_ms: float | None = Field(
        None, description="too deep: Redis time one call searching the whole list would take"
    )


class BulkQuarantineResult(Record):
    queue: str
    dlq: str
    pattern: str
    scanned: int
    matched: int
    moved: list[JobMove]
    skipped: list[JobMove]
    batches: int


class DlqEntry(Record):
    """A quarantined job: what it was, and who put it in the DLQ, when and why."""

    job_id: str
    name: str
    data: object
    opts: dict[str, object]
    attempts_made: int
    failed_reason: str | None
    original_failed_reason: str | None
    stacktrace: list[str]
    timestamp: int | None
    processed_on: int | None
    quarantined_at: int | None
    quarantined_by: str | None
    quarantine_reason: str | None
    from_state: str | None
    from_queue: str | None


class DlqListing(Record):
    queue: str
    dlq: str
    depth: int
    entries: list[DlqEntry]


class ReplayedJob(Record):
    job_id: str
    name: str
    replayed: bool
    problem: str | None = None


class ReplayResult(Record):
    queue: str
    dlq: str
    requested: int
    replayed: list[ReplayedJob]
    left: list[ReplayedJob]
    dropped_options: list[str]


@dataclass(frozen=True)
class MatchPreview:
    """What a bulk quarantine would move: `count` matches (at most the limit), the first
    few of them as (id, reason), and how many failed jobs were read to know (none when
    they could be counted without reading: a match-all pattern)."""

    count: int
    read: int
    sample: list[tuple[str, str]]
    counted_without_reading: bool


class JobDetail(QueueRecord):
    """One job as it is now (`job show`): enough to judge it without opening psql or
    redis-cli. Times are epoch milliseconds."""

    kind: str = "bullmq"
    job_id: str
    state: str = Field(description="its state in BullMQ's words (waiting, active, failed...)")
    status: str | None = Field(None, description="a DB row's own status word")
    job_name: str = Field(description="the BullMQ job name, or a DB row's type")
    data: object
    opts: dict[str, object] = Field(default_factory=dict)
    attempts: int
    failed_reason: str | None = Field(None, description="the latest failure")
    stacktrace: list[str] = Field(default_factory=list)
    created_ms: int | None = None
    run_after_ms: int | None = None
    updated_ms: int | None = None
    processed_ms: int | None = None
    finished_ms: int | None = None
    in_dlq: bool = Field(False, description="a DB row with a DLQ entry not yet replayed")


# --- workers and throughput (issue 14) ---


# --- failures, find and filtered bulk actions (issue 14) ---


# --- queue actions (issue 14) ---


# --- job detail and edit-then-replay (issue 14) ---
