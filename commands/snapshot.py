"""`snapshot [QUEUE...]`: depth, age, failures and DLQ depth per queue, at a glance."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pydantic import Field, SerializeAsAny

from bot.durations import humanize_age_ms
from bot.errors import NotFound, OperationFailed
from bot.queues.models import QueueSnapshot
from bot.queues.samples import DepthSamples, sample_key_base
from bot.queues.service import QueueService
from bot.roles import Role
from commands.context import CommandContext
from commands.parsing import QueueName, Request, WordParser, parse_words
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Block, Buttons, Chart, Fields, Heading, Mark, Note, Row, Table
from scheduler.state import DrainRun

USAGE = "snapshot [QUEUE ...] [--chart]"
# When a queue counts as backlogged or failing. The watcher (alerts) makes these
# configurable; a snapshot only needs a sensible reading at a glance.
BACKLOG_DEPTH = 1000
BACKLOG_AGE_MS = 5 * 60_000
FAILING_RATIO = 0.05
FAILING_MIN = 5  # a ratio over 3 finished jobs says little
DRAIN_HISTORY = 20
"""Drains looked at for a queue's last one in cron mode (the cron history, newest first)."""
WORKERS_UNKNOWN = "workers: unknown (this Redis refuses CLIENT LIST)"
STATUS_WORDS = {Mark.ERROR: "drain failed"}
"""A cron-mode queue's status is its last drain's result, in these words."""


class SnapshotRequest(Request):
    queues: tuple[QueueName, ...] = ()
    chart: bool = False


def lacks_workers(q: QueueSnapshot) -> bool:
    """Jobs wait to run and no Worker is connected to take them (a BullMQ queue whose
    workers were counted: not when Redis refused CLIENT LIST)."""
    return (
        q.kind == "bullmq"
        and q.workers == 0
        and not q.is_paused
        and q.counts["waiting"] + q.counts["prioritized"] > 0
    )


def queue_mark(q: QueueSnapshot, drains: dict[str, DrainRun | None] | None = None) -> Mark:
    """paused > failing > no workers > backlog > healthy. `drains` is given in cron mode
    (each queue's last drain, or None): there no Worker is connected between drains by
    design, so a waiting queue without workers is marked by its last drain's result
    instead of `no workers`: `drain failed`, or (drained, or none yet) what its depth and
    age say, as for any queue."""
    c = q.counts
    if q.is_paused:
        return Mark.PAUSED
    finished = c["failed"] + c["completed"]
    if c["failed"] >= FAILING_MIN and c["failed"] / finished >= FAILING_RATIO:
        return Mark.FAILING
    if lacks_workers(q):
        if drains is None:
            return Mark.NO_WORKERS
        last = drains.get(q.shown)
        if last is not None and last.error:
            return Mark.ERROR
    depth = c["waiting"] + c["prioritized"] + c["paused"]
    age = q.oldest_waiting_age_ms or 0
    if depth >= BACKLOG_DEPTH or age >= BACKLOG_AGE_MS:
        return Mark.BACKLOG
    return Mark.HEALTHY


def status_word(mark: Mark) -> str:
    return STATUS_WORDS.get(mark, mark.value)


def throughput_line(q: QueueSnapshot) -> str | None:
    rate = q.throughput
    if rate is None or rate.completed_per_min is None:
        return None
    parts = [f"{rate.completed_per_min:g} completed/min"]
    if rate.failed_per_min is not None:
        parts.append(f"{rate.failed_per_min:g} failed/min")
    source = "BullMQ metrics" if rate.source == "metrics" else "depth samples (left the queue)"
    return f"{', '.join(parts)} (last {rate.window_min:g} min, {source})"


def empty_line(q: QueueSnapshot) -> str | None:
    waiting = q.counts["waiting"] + q.counts["prioritized"]
    if q.throughput is None or waiting == 0:
        return None
    if q.time_to_empty_ms is None:
        return f"never at this rate: {waiting} waiting, nothing completing"
    return f"about {humanize_age_ms(q.time_to_empty_ms)} for {waiting} waiting"


class SnapshotReply(Reply):
    queues: list[QueueSnapshot]
    series: dict[str, list[tuple[int, int]]] | None = None
    unreachable: dict[str, str] = Field(default_factory=dict)
    """Queues that could not be read (the DB queue's database down), with the error."""
    drains: dict[str, DrainRun | None] | None = None
    """In cron mode, for queues waiting without workers: each one's last drain (or None)."""

    def mark(self, q: QueueSnapshot) -> Mark:
        return queue_mark(q, self.drains)

    def data(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "queues": [
                {**q.model_dump(mode="json", by_alias=True), "status": status_word(self.mark(q))}
                for q in self.queues
            ]
        }
        if self.unreachable:
            found["unreachable"] = self.unreachable
        return found

    def view(self) -> list[Block]:
        problems: list[Block] = [
            Note(mark=Mark.ERROR, text=f"'{name}' not read: {why}")
            for name, why in self.unreachable.items()
        ]
        if problems and not self.queues:
            return problems
        return [*self.snapshot_view(), *problems]

    def snapshot_view(self) -> list[Block]:
        if not self.queues:
            return [Note(mark=Mark.INFO, text="no queues found (set QUEUEOPS_QUEUES?)")]
        blocks: list[Block] = [
            Table(
                columns=[
                    "queue",
                    "status",
                    "waiting",
                    "paused",
                    "active",
                    "delayed",
                    "prio",
                    "children",
                    "failed",
                    "done",
                    "dlq",
                    "oldest waiting",
                    "workers",
                ],
                rows=[
                    Row(
                        mark=self.mark(q),
                        cells=[
                            q.shown,
                            status_word(self.mark(q)),
                            *(
                                str(q.counts[s])
                                for s in (
                                    "waiting",
                                    "paused",
                                    "active",
                                    "delayed",
                                    "prioritized",
                                    "waiting-children",
                                    "failed",
                                    "completed",
                                )
                            ),
                            str(q.dlq_depth),
                            "-"
                            if q.oldest_waiting_age_ms is None
                            else humanize_age_ms(q.oldest_waiting_age_ms),
                            "-" if q.workers is None else str(q.workers),
                        ],
                    )
                    for q in self.queues
                ],
            )
        ]
        if any(q.workers_unknown for q in self.queues):
            blocks.append(Note(mark=Mark.WARN, text=WORKERS_UNKNOWN))
        for q in self.queues:
            items = []
            if lacks_workers(q) and self.drains is not None:
                last = self.drains.get(q.shown)
                items.append(
                    (
                        "cron mode",
                        "no worker between drains; "
                        + (
                            "no drain recorded yet"
                            if last is None
                            else f"last drain {'failed: ' + last.error if last.error else 'ok'}"
                        ),
                    )
                )
            rate, empty = throughput_line(q), empty_line(q)
            if rate is not None:
                items.append(("throughput", rate))
            if empty is not None:
                items.append(("time to empty", empty))
            if q.kind != "bullmq":
                items.append(("kind", f"{q.kind} table, DLQ table counted in dlq"))
            if q.oldest_waiting_id is not None:
                items.append(("oldest waiting job", q.oldest_waiting_id))
            if q.other_statuses:
                items.append(
                    (
                        "other statuses",
                        ", ".join(f"{k} x{n}" for k, n in sorted(q.other_statuses.items())),
                    )
                )
            if q.top_waiting_names:
                items.append(
                    ("next to run", ", ".join(f"{t.key} x{t.count}" for t in q.top_waiting_names))
                )
            if q.top_failure_reasons:
                items.append(
                    (
                        "recent failures",
                        "; ".join(f"{t.count}x {t.key}" for t in q.top_failure_reasons),
                    )
                )
            if items:
                blocks += [Heading(text=q.shown), Fields(items=items)]
            if q.recent_failures:
                blocks.append(
                    Table(
                        columns=["newest failures", "type", "attempts", "error"],
                        rows=[
                            Row(
                                mark=Mark.WARN,
                                cells=[f.job_id, f.name, str(f.attempts), f.reason[:120]],
                            )
                            for f in q.recent_failures[:5]
                        ],
                    )
                )
        if self.series is not None:
            rates = any(name.endswith("/min") for name in self.series)
            title = "Queue depth (waiting)" + (", completed and failed per minute" if rates else "")
            blocks.append(Chart(title=f"{title}, last hour", series=self.series))
        return blocks


class MultiEnvSnapshotReply(Reply):
    """`snapshot` without `--env` when there are several environments: each one's reply
    (a snapshot, or the error that one environment gave), under a heading of its name."""

    environments: dict[str, SerializeAsAny[Reply]]

    def data(self) -> dict[str, Any]:
        return {"environments": {name: r.data() for name, r in self.environments.items()}}

    def view(self) -> list[Block]:
        blocks: list[Block] = []
        for name, reply in self.environments.items():
            blocks += [Heading(text=f"environment {name}"), *reply.view()]
        return blocks

    @property
    def exit_code(self) -> int:
        """0 when every environment answered, else the worst of their exit codes."""
        failed = [r for r in self.environments.values() if not r.ok]
        return max((int(getattr(r, "exit_code", 1)) for r in failed), default=0)


def parser() -> WordParser:
    parser = WordParser("snapshot", USAGE)
    parser.add_argument(
        "queues", metavar="QUEUE", nargs="*", help="the queues to show (default: every queue)"
    )
    parser.add_argument(
        "--chart",
        action="store_true",
        default=None,
        help="add each queue's depth over the last hour (a picture in Slack)",
    )
    return parser


def parse(words: Sequence[str]) -> SnapshotRequest:
    return parse_words(SnapshotRequest, parser(), words)


async def last_drains(
    ctx: CommandContext, snaps: Sequence[QueueSnapshot]
) -> dict[str, DrainRun | None] | None:
    """In cron mode, the last drain of each queue that waits without workers; None outside
    cron mode. Asked only when such a queue exists (the cron's state and history: 3
    commands), so a healthy snapshot stays at its 2."""
    waiting = [q.shown for q in snaps if lacks_workers(q)]
    if not waiting:
        return None
    try:
        state = ctx.cron_state()
    except OperationFailed:
        return None
    if not (await state.status()).enabled:
        return None
    runs = await state.history(DRAIN_HISTORY)
    return {name: next((r for r in runs if name in r.queues), None) for name in waiting}


async def run(req: SnapshotRequest, ctx: CommandContext) -> SnapshotReply:
    unreachable: dict[str, str] = {}
    snaps = await ctx.queues.snapshot(req.queues or None, unreachable=unreachable)
    series = None
    if req.chart:
        # The samples the scheduler's tick keeps (queueops serve); none without it. Read
        # for the chart, they also give a rate where no Worker records metrics.
        samples = DepthSamples(ctx.queues.redis, sample_key_base(ctx.settings.state_prefix))
        series = {q.shown: await samples.series(q.full) for q in snaps}
        now = int(time.time() * 1000)
        snaps = [ctx.queues.with_sampled_rate(q, series[q.shown], now) for q in snaps]
        # Completed and failed per minute beside the depth, where Workers record metrics.
        for q in snaps:
            for suffix, points in (await ctx.queues.minute_rates(q)).items():
                series[f"{q.shown}{suffix}"] = points
    return SnapshotReply(
        queues=snaps,
        series=series,
        unreachable=unreachable,
        ok=not unreachable,
        drains=await last_drains(ctx, snaps),
    )


register(
    Command(
        name="snapshot",
        usage=USAGE,
        summary="per queue: counts, oldest waiting age, top job names and failures, DLQ depth",
        role=Role.VIEWER,
        parse=parse,
        run=run,
        examples=("snapshot", "snapshot batch-jobs --chart"),
        parser=parser,
    )
)


STATUS_CLUSTER_SCAN = 200
"""Newest failed jobs an incident's status groups for its top 3 failure clusters: a few
pages of a bounded scan (bot/queues/bullmq/search.py), on each refresh of the status."""


async def snapshot_view(service: QueueService, queues: Sequence[str]) -> list[Block]:
    """The snapshot as other messages show it (an incident's status message): the named
    queues, or every queue when a name is unknown here (an alert's label may not match),
    and for each BullMQ queue with failed jobs its top 3 failure clusters with their keys
    (`quarantine QUEUE --cluster K` / `retry QUEUE --cluster K`)."""
    blocks, _ = await snapshot_view_and_queues(service, queues)
    return blocks


async def snapshot_view_and_queues(
    service: QueueService, queues: Sequence[str]
) -> tuple[list[Block], list[QueueSnapshot]]:
    """`snapshot_view`, and the snapshots it shows (an incident keeps their peak depth)."""
    blocks: list[Block] = []
    try:
        snaps = await service.snapshot(list(queues) or None)
    except NotFound as err:
        blocks.append(Note(mark=Mark.WARN, text=f"{err}; showing every queue"))
        snaps = await service.snapshot(None)
    blocks += SnapshotReply(queues=snaps).view()
    for q in snaps:
        if q.kind != "bullmq" or not q.counts.get("failed"):
            continue
        report = await service.failures(q.full, scan=STATUS_CLUSTER_SCAN)
        top = report.clusters[:3]
        if top:
            blocks.append(
                Fields(
                    items=[
                        (
                            f"{q.shown} failures {c.key}",
                            f"{c.count}x {c.text[:150]} (e.g. job {c.sample_id})",
                        )
                        for c in top
                    ]
                )
            )
            blocks.append(
                Buttons(
                    items=[
                        (
                            f"Quarantine cluster {c.key}",
                            f"quarantine {q.full} --cluster {c.key}",
                            f"Move the failed jobs of {q.shown} whose failure reads like "
                            f'"{c.text[:120]}" ({c.count} in the newest '
                            f"{STATUS_CLUSTER_SCAN}) to its DLQ? They can be replayed.",
                        )
                        for c in top
                    ]
                )
            )
    return blocks, snaps
