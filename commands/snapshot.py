"""`snapshot [QUEUE...]`: depth, age, failures and DLQ depth per queue, at a glance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field, SerializeAsAny

from bot.durations import humanize_age_ms
from bot.errors import NotFound
from bot.queues.models import QueueSnapshot
from bot.queues.samples import DepthSamples, sample_key_base
from bot.queues.service import QueueService
from bot.roles import Role
from commands.context import CommandContext
from commands.parsing import QueueName, Request, WordParser, parse_words
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Block, Chart, Fields, Heading, Mark, Note, Row, Table

USAGE = "snapshot [QUEUE ...] [--chart]"
# When a queue counts as backlogged or failing. The watcher (alerts) makes these
# configurable; a snapshot only needs a sensible reading at a glance.
BACKLOG_DEPTH = 1000
BACKLOG_AGE_MS = 5 * 60_000
FAILING_RATIO = 0.05
FAILING_MIN = 5  # a ratio over 3 finished jobs says little


class SnapshotRequest(Request):
    queues: tuple[QueueName, ...] = ()
    chart: bool = False


def queue_mark(q: QueueSnapshot) -> Mark:
    """paused > failing > backlog > healthy."""
    c = q.counts
    if q.is_paused:
        return Mark.PAUSED
    finished = c["failed"] + c["completed"]
    if c["failed"] >= FAILING_MIN and c["failed"] / finished >= FAILING_RATIO:
        return Mark.FAILING
    depth = c["waiting"] + c["prioritized"] + c["paused"]
    age = q.oldest_waiting_age_ms or 0
    if depth >= BACKLOG_DEPTH or age >= BACKLOG_AGE_MS:
        return Mark.BACKLOG
    return Mark.HEALTHY


class SnapshotReply(Reply):
    queues: list[QueueSnapshot]
    series: dict[str, list[tuple[int, int]]] | None = None
    unreachable: dict[str, str] = Field(default_factory=dict)
    """Queues that could not be read (the DB queue's database down), with the error."""

    def data(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "queues": [
                {**q.model_dump(mode="json", by_alias=True), "status": queue_mark(q).value}
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
                ],
                rows=[
                    Row(
                        mark=queue_mark(q),
                        cells=[
                            q.shown,
                            queue_mark(q).value,
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
                        ],
                    )
                    for q in self.queues
                ],
            )
        ]
        for q in self.queues:
            items = []
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
            blocks.append(Chart(title="Queue depth (waiting), last hour", series=self.series))
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


async def run(req: SnapshotRequest, ctx: CommandContext) -> SnapshotReply:
    unreachable: dict[str, str] = {}
    snaps = await ctx.queues.snapshot(req.queues or None, unreachable=unreachable)
    series = None
    if req.chart:
        # The samples the scheduler's tick keeps (queueops serve); none without it.
        samples = DepthSamples(ctx.queues.redis, sample_key_base(ctx.settings.state_prefix))
        series = {q.shown: await samples.series(q.full) for q in snaps}
    return SnapshotReply(queues=snaps, series=series, unreachable=unreachable, ok=not unreachable)


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


async def snapshot_view(service: QueueService, queues: Sequence[str]) -> list[Block]:
    """The snapshot as other messages show it (an incident's status message): the named
    queues, or every queue when a name is unknown here (an alert's label may not match)."""
    try:
        snaps = await service.snapshot(list(queues) or None)
        return SnapshotReply(queues=snaps).view()
    except NotFound as err:
        return [
            Note(mark=Mark.WARN, text=f"{err}; showing every queue"),
            *SnapshotReply(queues=await service.snapshot(None)).view(),
        ]
