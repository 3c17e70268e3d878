"""What the adapter returns: plain pydantic records, camelCase in JSON like npm bullmq."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from bot.patterns import UserPattern
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
    workers: int | None = Field(
        None, description="npm bullmq Workers connected (CLIENT LIST); None: unknown"
    )
    workers_unknown: bool = Field(
        False, description="Redis refused CLIENT LIST: nobody can tell how many are connected"
    )
    throughput: Throughput | None = Field(
        None, description="jobs finished per minute recently (BullMQ metrics or samples)"
    )
    time_to_empty_ms: int | None = Field(
        None, description="waiting jobs / completed per minute; None when nothing completes"
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
    metrics_completed: int | None = Field(
        None, description="BullMQ's metrics counter of completed jobs (None: not recorded)"
    )
    workers: int | None = Field(
        None, description="Workers connected, when the watcher asked (None: not asked)"
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
    progress: object = Field(None, description="what the worker last reported (updateProgress)")
    return_value: object = None
    attempts_started: int | None = None
    delay_ms: int | None = None
    priority: int | None = None
    processed_by: str | None = Field(None, description="the worker that took it last (pb)")
    logs: list[str] = Field(
        default_factory=list, description="the newest job logs (addJobLog), oldest first"
    )
    logs_total: int = Field(0, description="how many log lines the job has in all")
    parent_key: str | None = Field(None, description="a flow child's parent: `prefix:queue:id`")
    children: JobChildren | None = Field(None, description="a flow parent's children")
    original_data: object = Field(
        None, description="the data before an edited replay (`qo.originalData`), if any"
    )


# --- workers and throughput (issue 14) ---


class WorkerConnection(Record):
    """One npm bullmq Worker connected to Redis, as CLIENT LIST shows it: the Worker's
    blocking connection, named `<prefix>:<base64(queue name)>[:w:<worker name>]`."""

    address: str = Field(description="the Worker's host:port as Redis sees it")
    age_s: int = Field(description="seconds since it connected")
    idle_s: int = Field(description="seconds since its last command")
    worker_name: str | None = Field(None, description="the Worker's `name` option, if set")
    last_command: str = Field("", description="its last command (bzpopmin: waiting for jobs)")
    node: str | None = Field(None, description="the cluster node it is connected to")


class QueueWorkers(QueueRecord):
    """The Workers connected for one queue; `workers` is None when Redis refused CLIENT
    LIST (some managed Redis do), so nobody can tell."""

    workers: list[WorkerConnection] | None


class Throughput(Record):
    """Jobs finished per minute, recently: from BullMQ's metrics keys when the Workers
    record them (`metrics` option), else from the depth samples the tick takes."""

    completed_per_min: float | None = Field(None, description="None: nothing measured it")
    failed_per_min: float | None = None
    source: str = Field("none", description='"metrics" (BullMQ\'s keys), "samples" or "none"')
    window_min: float = Field(0.0, description="how many minutes the rate covers")


# --- failures, find and filtered bulk actions (issue 14) ---


class FoundJob(Record):
    """One job a scan matched (`find`, the preview of a filtered action)."""

    job_id: str
    job_name: str
    state: str = Field(description="BullMQ's word: waiting, active, failed, delayed...")
    timestamp: int | None = Field(None, description="when it was created (ms)")
    finished_on: int | None = None
    attempts: int = 0
    failed_reason: str | None = Field(None, description="its first line, cut to 300 chars")


class ScanStats(Record):
    """How a bounded scan went: jobs looked at, of how many in the states scanned, and
    whether it stopped before looking at all of them (`stopped_by`: "limit" when enough
    matched, "scan" at the --scan bound; None when it looked at every job)."""

    states: list[str]
    looked: int
    total: int
    matched: int
    calls: int
    stopped_early: bool
    stopped_by: str | None = None
    too_large: int = Field(0, description="payloads too large to search by data")


class FindResult(QueueRecord):
    jobs: list[FoundJob]
    scan: ScanStats
    note: str | None = Field(None, description="what the scan could not tell by its counts")


class FailureCluster(Record):
    """Failed jobs whose reasons read the same once ids, numbers, quoted values and
    timestamps are replaced; `key` is what `--cluster K` takes."""

    key: str
    text: str
    count: int
    first_seen_ms: int | None
    last_seen_ms: int | None
    names: list[Tally] = Field(description="the job names involved, most frequent first")
    sample_id: str
    sample_reason: str


class FailureReport(QueueRecord):
    clusters: list[FailureCluster]
    scan: ScanStats


class ActionSkip(Record):
    job_id: str
    problem: str


class FilteredActionResult(QueueRecord):
    """A filtered bulk action (`retry`, `quarantine`, `promote`, `remove` with filters or
    --cluster): what it did to the matches, or with `dry_run` what it would do."""

    action: str
    dry_run: bool = False
    selected: list[FoundJob] = Field(description="the matches (all of them, up to the limit)")
    done: list[str] = Field(default_factory=list, description="ids acted on")
    skipped: list[ActionSkip] = Field(default_factory=list)
    scan: ScanStats
    dlq: str | None = Field(None, description="quarantine and remove: where the jobs went")


@dataclass(frozen=True)
class JobFilter:
    """What `find` and the filtered actions select: every given part must hold.

    `states` empty: every state. `reason` is a user's RE2 pattern (bot/patterns.py), matched
    off the loop; `data_text` a substring of the payload's JSON; `data_path` a dotted path
    and the value it must equal (a number compares as a number); `older_than_ms` the age of
    the job (since it was created); `cluster` a failure cluster's key (failed jobs only)."""

    states: tuple[str, ...] = ()
    name: str | None = None
    job_id: str | None = None
    reason: UserPattern | None = None
    data_text: str | None = None
    data_path: tuple[str, str] | None = None
    older_than_ms: int | None = None
    cluster: str | None = None
    limit: int = 20
    scan: int = 10_000

    @property
    def needs_data(self) -> bool:
        return self.data_text is not None or self.data_path is not None

    @property
    def is_empty(self) -> bool:
        """No condition at all: it selects every job of the states scanned."""
        return not (
            self.states
            or self.name
            or self.job_id
            or self.reason
            or self.needs_data
            or self.older_than_ms is not None
            or self.cluster
        )


# --- queue actions (issue 14) ---


class CleanResult(QueueRecord):
    """`clean`: finished jobs removed, oldest first."""

    state: str = Field(description="completed or failed")
    older_than_ms: int
    removed: int
    left_older: int = Field(description="jobs of that state still older than the cut-off")


class EmptyResult(QueueRecord):
    """`empty`: waiting (with paused), prioritized and delayed jobs removed, by state."""

    removed: dict[str, int]
    left: dict[str, int]
    kept_scheduler_jobs: int = Field(description="a job scheduler's next run, kept each")


class ObliterateResult(QueueRecord):
    """`obliterate`: the queue and all its jobs deleted."""

    calls: int = Field(description="bounded script calls it took")
    forced: bool


class AddedJob(QueueRecord):
    """`add`: the job as PyPI bullmq's Queue.add stored it."""

    job_id: str
    job_name: str
    delay_ms: int = 0
    priority: int = 0


class SchedulerInfo(Record):
    """One job scheduler (npm bullmq 5: `repeat` zset + `repeat:<id>` hash) or legacy
    repeatable job (`legacy`: its key is `name:id:endDate:tz:pattern`)."""

    key: str = Field(description="the scheduler id (legacy: the repeat key)")
    job_name: str
    next_ms: int = Field(description="when its next job runs (ms since the epoch)")
    pattern: str | None = None
    every_ms: int | None = None
    tz: str | None = None
    iterations: int | None = Field(None, description="jobs it has made so far (npm's `ic`)")
    limit: int | None = None
    end_ms: int | None = None
    legacy: bool = False
    last_completed_ms: int | None = Field(
        None, description="finishedOn of its newest completed job, if among those scanned"
    )


class SchedulerListing(QueueRecord):
    total: int = Field(description="schedulers in the queue (the first 100 are listed)")
    schedulers: list[SchedulerInfo]
    completed_scanned: int = Field(description="newest completed jobs looked at for last runs")


# --- job detail and edit-then-replay (issue 14) ---


class JobChildren(Record):
    """A flow parent's children, as npm bullmq's getDependencies names them: `pending`
    (`:dependencies`, not finished), `processed` (`:processed`, done), `ignored` (`:failed`,
    failed with ignoreDependencyOnFailure) and `failed` (`:unsuccessful`). Counts are exact;
    the keys (`prefix:queue:id`) are the first few only (bounded reads)."""

    pending: int = 0
    processed: int = 0
    ignored: int = 0
    failed: int = 0
    pending_keys: list[str] = Field(default_factory=list)
    processed_keys: list[str] = Field(default_factory=list)
    ignored_reasons: dict[str, str] = Field(default_factory=dict)
    failed_keys: list[str] = Field(default_factory=list)

    @property
    def total(self) -> int:
        return self.pending + self.processed + self.ignored + self.failed


class DataChange(Record):
    """One path an edited replay changes: the JSON text before and after (None: absent)."""

    path: str
    before: str | None
    after: str | None


class DataEdit(Record):
    """An edit of a job's data for `dlq replay QUEUE ID`: a JSON merge patch (RFC 7386),
    applied first, then each `--set` (a path's keys, and the JSON value it gets)."""

    patch: dict[str, object] | None = None
    sets: list[tuple[list[str], object]] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.patch is None and not self.sets


JobDetail.model_rebuild()
