"""`clean`, `empty`, `obliterate`, `add`, `schedulers`: the queue actions people take in
Bull Board and bull-repl, one command each, guarded.

- `clean` (admin) removes finished jobs older than a cut-off; chat shows how many first and
  asks to confirm (the preview is one ZCOUNT).
- `empty` and `obliterate` (admin) cannot be undone, so a button is not enough: the person
  types the queue's name, `--confirm QUEUE`, in every transport (the terminal too). Without
  it, or with another name, the command refuses with one line saying what to type and how
  many jobs would go: the name typed is the confirmation, so no chat button is asked for.
- `add` (operator) enqueues one job from a JSON payload (seed 004's hand requeue); the JSON
  is bounded (MAX_ADD_BYTES) before it is parsed, and a mistake is one line.
- `schedulers` (viewer) lists job schedulers and repeatable jobs with their next run and
  their last completed run.

Every change goes through QueueService, which refuses read-only queues (QUEUEOPS_READONLY)
and the DB queue (these are BullMQ operations).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from bot.durations import format_duration_ms
from bot.errors import Refused, UsageError
from bot.queues.models import (
    AddedJob,
    CleanResult,
    EmptyResult,
    ObliterateResult,
    SchedulerListing,
)
from bot.roles import Role
from bot.text import plural
from commands.context import CommandContext
from commands.dlq import when
from commands.parsing import (
    JobId,
    QueueName,
    Request,
    WordParser,
    duration_argument,
    parse_words,
    whole_number,
)
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Block, Fields, Mark, Note, Row, Table

CLEAN_USAGE = "clean QUEUE --state completed|failed --older-than 24h [--limit N]"
EMPTY_USAGE = "empty QUEUE --confirm QUEUE"
OBLITERATE_USAGE = "obliterate QUEUE --confirm QUEUE [--force]"
ADD_USAGE = "add QUEUE NAME JSON [--delay 5m] [--priority N] [--job-id ID]"
SCHEDULERS_USAGE = "schedulers QUEUE"

MAX_ADD_BYTES = 64 * 1024
"""The largest JSON payload `add` takes: a chat line is not the place for more."""
MAX_PRIORITY = 2_097_152
"""npm bullmq's highest priority (2^21)."""

JobName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=r"^\S")
]


def parse_payload(text: str) -> Any:
    """The job's data from a person's JSON: one clear line when too big or not JSON. The
    size is checked before parsing, so json.loads only ever sees MAX_ADD_BYTES."""
    size = len(text.encode("utf-8"))
    if size > MAX_ADD_BYTES:
        raise UsageError(
            f"JSON is {size:,} bytes; add takes at most {MAX_ADD_BYTES:,} (use your producer "
            "for bigger payloads)"
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(
            f"JSON is not valid: {err.msg} at line {err.lineno} column {err.colno} "
            """(quote it: add QUEUE NAME '{"a": 1}')"""
        ) from None


def _confirm_line(command: str, queue: str, what: str) -> str:
    return (
        f"{command} {what} in '{queue}' and cannot be undone; to go ahead, type the queue's "
        f"name: {command} {queue} --confirm {queue}"
    )


class CleanRequest(Request):
    queue: QueueName
    state: Literal["completed", "failed"]
    older_than_ms: int = Field(ge=0)
    limit: int | None = Field(None, ge=1, le=1_000_000)


class NamedRequest(Request):
    """`empty`/`obliterate`: `confirm` must repeat the queue's name."""

    queue: QueueName
    confirm: str | None = None
    force: bool = False


class AddRequest(Request):
    queue: QueueName
    job_name: JobName
    payload: str
    delay_ms: int | None = Field(None, ge=0)
    priority: int | None = Field(None, ge=1, le=MAX_PRIORITY)
    job_id: JobId | None = None


class SchedulersRequest(Request):
    queue: QueueName


class CleanPreview(Reply):
    queue: str
    state: str
    older_than_ms: int
    count: int
    limit: int | None = None

    @property
    def nothing_to_do(self) -> bool:
        return self.count == 0

    def view(self) -> list[Block]:
        age = format_duration_ms(self.older_than_ms)
        if not self.count:
            return [
                Note(
                    mark=Mark.INFO,
                    text=f"no {self.state} jobs in '{self.queue}' older than {age}; "
                    "nothing to clean",
                )
            ]
        n = self.count if self.limit is None else min(self.count, self.limit)
        return [
            Note(
                mark=Mark.WARN,
                text=f"clean would remove {plural(n, f'{self.state} job')} from "
                f"'{self.queue}' (finished over {age} ago, oldest first)",
            )
        ]


class CleanReply(Reply):
    result: CleanResult

    def view(self) -> list[Block]:
        r = self.result
        age = format_duration_ms(r.older_than_ms)
        text = f"{plural(r.removed, f'{r.state} job')} older than {age} removed from '{r.shown}'"
        if r.left_older:
            text += f"; {r.left_older:,} more left (run it again, or raise --limit)"
        return [Note(mark=Mark.OK if r.removed else Mark.INFO, text=text)]


class EmptyReply(Reply):
    result: EmptyResult

    def view(self) -> list[Block]:
        r = self.result
        gone = sum(r.removed.values())
        detail = ", ".join(f"{n:,} {s}" for s, n in r.removed.items() if n)
        text = f"'{r.shown}' emptied: {plural(gone, 'job')} removed" + (
            f" ({detail})" if detail else ""
        )
        blocks: list[Block] = [Note(mark=Mark.OK if gone else Mark.INFO, text=text)]
        if r.kept_scheduler_jobs:
            blocks.append(
                Note(
                    mark=Mark.INFO,
                    text=f"kept {plural(r.kept_scheduler_jobs, 'job')} of job schedulers "
                    "(their next run); `schedulers` lists them",
                )
            )
        return blocks


class ObliterateReply(Reply):
    result: ObliterateResult

    def view(self) -> list[Block]:
        r = self.result
        how = " (active jobs too: --force)" if r.forced else ""
        return [Note(mark=Mark.OK, text=f"'{r.shown}' obliterated: every job and key removed{how}")]


class AddReply(Reply):
    job: AddedJob

    def view(self) -> list[Block]:
        j = self.job
        extra = []
        if j.delay_ms:
            extra.append(f"runs in {format_duration_ms(j.delay_ms)}")
        if j.priority:
            extra.append(f"priority {j.priority}")
        tail = f" ({', '.join(extra)})" if extra else ""
        return [
            Note(mark=Mark.OK, text=f"job {j.job_id} '{j.job_name}' added to '{j.shown}'{tail}")
        ]


class SchedulersReply(Reply):
    listing: SchedulerListing

    def view(self) -> list[Block]:
        li = self.listing
        if not li.schedulers:
            return [Note(mark=Mark.INFO, text=f"'{li.shown}' has no job schedulers")]
        blocks: list[Block] = [
            Note(
                mark=Mark.INFO,
                text=f"'{li.shown}' has {plural(li.total, 'job scheduler')}; soonest first",
            ),
            Table(
                columns=["scheduler", "job", "repeat", "next run", "last completed"],
                rows=[
                    Row(
                        cells=[
                            s.key if not s.legacy else f"{s.key} (legacy)",
                            s.job_name,
                            s.pattern
                            or (f"every {format_duration_ms(s.every_ms)}" if s.every_ms else "-"),
                            when(s.next_ms),
                            when(s.last_completed_ms)
                            if s.last_completed_ms
                            else f"none in the newest {li.completed_scanned:,} completed",
                        ]
                    )
                    for s in li.schedulers
                ],
            ),
        ]
        if li.total > len(li.schedulers):
            blocks.append(
                Fields(items=[("listed", f"the first {len(li.schedulers):,} of {li.total:,}")])
            )
        return blocks


def clean_parser() -> WordParser:
    parser = WordParser("clean", CLEAN_USAGE)
    parser.add_argument("queue", metavar="QUEUE", help="the queue to clean")
    parser.add_argument(
        "--state",
        required=True,
        choices=("completed", "failed"),
        help="which finished jobs: completed or failed",
    )
    parser.add_argument(
        "--older-than",
        dest="older_than_ms",
        required=True,
        type=duration_argument,
        metavar="AGE",
        help="only jobs that finished longer ago than this (24h, 7d)",
    )
    parser.add_argument(
        "--limit",
        type=whole_number,
        metavar="N",
        help="remove at most N, oldest first (default: all)",
    )
    return parser


def _named_parser(command: str, usage: str, *, force: bool) -> WordParser:
    parser = WordParser(command, usage)
    parser.add_argument("queue", metavar="QUEUE", help=f"the queue to {command}")
    parser.add_argument(
        "--confirm",
        metavar="QUEUE",
        help="the queue's name again: it cannot be undone",
    )
    if force:
        parser.add_argument(
            "--force",
            action="store_true",
            default=None,
            help="also while jobs are active (their workers will fail to finish them)",
        )
    return parser


def empty_parser() -> WordParser:
    return _named_parser("empty", EMPTY_USAGE, force=False)


def obliterate_parser() -> WordParser:
    return _named_parser("obliterate", OBLITERATE_USAGE, force=True)


def add_parser() -> WordParser:
    parser = WordParser("add", ADD_USAGE)
    parser.add_argument("queue", metavar="QUEUE", help="the queue to add the job to")
    parser.add_argument("job_name", metavar="NAME", help="the job's name (what workers see)")
    parser.add_argument(
        "payload", metavar="JSON", help="the job's data as JSON, quoted: '{\"id\": 42}'"
    )
    parser.add_argument(
        "--delay",
        dest="delay_ms",
        type=duration_argument,
        metavar="DURATION",
        help="run it after this long (5m, 1h)",
    )
    parser.add_argument(
        "--priority",
        type=whole_number,
        metavar="N",
        help=f"1 (highest) to {MAX_PRIORITY:,}; default: none",
    )
    parser.add_argument(
        "--job-id",
        dest="job_id",
        metavar="ID",
        help="a job id of your own (refused if it exists; not a plain number)",
    )
    return parser


def schedulers_parser() -> WordParser:
    parser = WordParser("schedulers", SCHEDULERS_USAGE)
    parser.add_argument("queue", metavar="QUEUE", help="the queue whose schedulers to list")
    return parser


def parse_clean(words: Sequence[str]) -> CleanRequest:
    return parse_words(CleanRequest, clean_parser(), words)


def parse_empty(words: Sequence[str]) -> NamedRequest:
    return parse_words(NamedRequest, empty_parser(), words)


def parse_obliterate(words: Sequence[str]) -> NamedRequest:
    return parse_words(NamedRequest, obliterate_parser(), words)


def parse_add(words: Sequence[str]) -> AddRequest:
    req = parse_words(AddRequest, add_parser(), words)
    parse_payload(req.payload)  # a mistake in the JSON is a usage line, before Redis
    if req.job_id is not None and req.job_id.isdigit():
        # npm bullmq refuses integer custom ids: they would collide with its own counter.
        raise UsageError(f"--job-id: '{req.job_id}' is a plain number; BullMQ numbers its own")
    return req


def parse_schedulers(words: Sequence[str]) -> SchedulersRequest:
    return parse_words(SchedulersRequest, schedulers_parser(), words)


async def preview_clean(req: CleanRequest, ctx: CommandContext) -> CleanPreview:
    count = await ctx.queues.clean_preview(req.queue, state=req.state, older_ms=req.older_than_ms)
    return CleanPreview(
        queue=req.queue,
        state=req.state,
        older_than_ms=req.older_than_ms,
        count=count,
        limit=req.limit,
    )


async def run_clean(req: CleanRequest, ctx: CommandContext) -> CleanReply:
    result = await ctx.queues.clean(
        req.queue, state=req.state, older_ms=req.older_than_ms, limit=req.limit
    )
    return CleanReply(result=result)


async def run_empty(req: NamedRequest, ctx: CommandContext) -> EmptyReply:
    await ctx.queues.guard_change(req.queue)  # a read-only queue: say that, not "type it"
    if req.confirm != req.queue:
        counts = await ctx.queues.empty_preview(req.queue)
        n = sum(counts.values())
        raise Refused(
            _confirm_line("empty", req.queue, f"removes {plural(n, 'waiting or delayed job')}")
        )
    return EmptyReply(result=await ctx.queues.empty(req.queue))


async def run_obliterate(req: NamedRequest, ctx: CommandContext) -> ObliterateReply:
    await ctx.queues.guard_change(req.queue)  # a read-only queue: say that, not "type it"
    if req.confirm != req.queue:
        snap = (await ctx.queues.snapshot([req.queue]))[0]
        n = sum(snap.counts.values())
        raise Refused(
            _confirm_line("obliterate", req.queue, f"deletes every key and {plural(n, 'job')}")
        )
    return ObliterateReply(result=await ctx.queues.obliterate(req.queue, force=req.force))


async def run_add(req: AddRequest, ctx: CommandContext) -> AddReply:
    job = await ctx.queues.add(
        req.queue,
        job_name=req.job_name,
        data=parse_payload(req.payload),
        delay_ms=req.delay_ms,
        priority=req.priority,
        job_id=req.job_id,
    )
    return AddReply(job=job)


async def run_schedulers(req: SchedulersRequest, ctx: CommandContext) -> SchedulersReply:
    return SchedulersReply(listing=await ctx.queues.schedulers(req.queue))


register(
    Command(
        name="clean",
        usage=CLEAN_USAGE,
        summary="remove completed or failed jobs older than an age (oldest first)",
        role=Role.ADMIN,
        parse=parse_clean,
        run=run_clean,
        examples=("clean batch-jobs --state completed --older-than 24h",),
        confirm=lambda req: True,
        preview=preview_clean,
        parser=clean_parser,
    )
)
register(
    Command(
        name="empty",
        usage=EMPTY_USAGE,
        summary="remove every waiting and delayed job; type the queue's name to confirm",
        role=Role.ADMIN,
        parse=parse_empty,
        run=run_empty,
        examples=("empty batch-jobs --confirm batch-jobs",),
        parser=empty_parser,
    )
)
register(
    Command(
        name="obliterate",
        usage=OBLITERATE_USAGE,
        summary="delete a queue and all its jobs; type its name to confirm",
        role=Role.ADMIN,
        parse=parse_obliterate,
        run=run_obliterate,
        examples=("obliterate old-queue --confirm old-queue",),
        parser=obliterate_parser,
    )
)
register(
    Command(
        name="add",
        usage=ADD_USAGE,
        summary="add one job with a JSON payload (optionally delayed or prioritised)",
        role=Role.OPERATOR,
        parse=parse_add,
        run=run_add,
        examples=("""add billing backfill '{"invoice": 42}' --delay 5m""",),
        parser=add_parser,
    )
)
register(
    Command(
        name="schedulers",
        usage=SCHEDULERS_USAGE,
        summary="job schedulers and repeatable jobs: next run, last completed run",
        role=Role.VIEWER,
        parse=parse_schedulers,
        run=run_schedulers,
        examples=("schedulers maintenance",),
        parser=schedulers_parser,
    )
)
