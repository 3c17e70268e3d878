"""`dlq list QUEUE`, `dlq show QUEUE JOB_ID`, `dlq replay QUEUE [--count 10]`, and
`dlq replay QUEUE JOB_ID [--set a.b=VALUE ...] [--patch JSON]`: one job by id, its data
edited first (Bull Board #478/#713), the diff in the preview, the original kept on the
replayed job (`qo.originalData`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import Field

from bot.errors import UsageError
from bot.queues.models import DataChange, DataEdit, DlqEntry, DlqListing, ReplayResult
from bot.roles import Role
from bot.text import plural
from commands.context import CommandContext
from commands.parsing import JobId, QueueName, Request, WordParser, parse_words, whole_number
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Block, Code, Fields, Heading, Mark, Note, Row, Table

LIST_USAGE = "dlq list QUEUE [--limit 20]"
SHOW_USAGE = "dlq show QUEUE JOB_ID"
REPLAY_USAGE = (
    "dlq replay QUEUE [--count 10] [--reset-attempts] | "
    "dlq replay QUEUE JOB_ID [--set a.b=VALUE ...] [--patch JSON]"
)
SET_MAX = 20
"""--set options one replay takes."""
PATH_KEYS_MAX = 16
PATH_CHARS_MAX = 200
VALUE_CHARS_MAX = 10_000
PATCH_CHARS_MAX = 65_536
JSON_DEPTH_MAX = 32
"""Nesting a --set value or a --patch may have (a user's JSON is parsed on the loop: bounded
in size and depth, it stays well under a millisecond)."""


def when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class DlqListRequest(Request):
    queue: QueueName
    limit: int = Field(20, ge=1, le=500)


class DlqShowRequest(Request):
    queue: QueueName
    job_id: JobId


class DlqReplayRequest(Request):
    queue: QueueName
    job_id: JobId | None = None
    count: int = Field(10, ge=1, le=10_000)
    reset_attempts: bool = False
    sets: list[tuple[list[str], object]] = Field(default_factory=list)
    patch: dict[str, object] | None = None

    @property
    def edit(self) -> DataEdit:
        return DataEdit(patch=self.patch, sets=self.sets)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _too_deep(value: object) -> bool:
    """Nested deeper than JSON_DEPTH_MAX (walked without recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > JSON_DEPTH_MAX:
            return True
        if isinstance(node, dict):
            stack += [(v, depth + 1) for v in node.values()]
        elif isinstance(node, list):
            stack += [(v, depth + 1) for v in node]
    return False


def assignment(text: str) -> tuple[list[str], object]:
    """argparse `type=` for --set: `a.b=VALUE`, VALUE as JSON when it parses (a number,
    true, null, "a quoted string", an object), else the plain string as typed."""
    path, eq, raw = text.partition("=")
    if not eq or not path:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not PATH=VALUE (e.g. customer.id=42)")
    if len(path) > PATH_CHARS_MAX:
        raise argparse.ArgumentTypeError(f"the path is over {PATH_CHARS_MAX} characters")
    keys = path.split(".")
    if any(not key.strip() for key in keys):
        raise argparse.ArgumentTypeError(f"{path[:40]!r} has an empty key")
    if len(keys) > PATH_KEYS_MAX:
        raise argparse.ArgumentTypeError(f"{path[:40]!r} is deeper than {PATH_KEYS_MAX} keys")
    if len(raw) > VALUE_CHARS_MAX:
        raise argparse.ArgumentTypeError(
            f"the value for {path[:40]} is over {VALUE_CHARS_MAX:,} characters"
        )
    try:
        value: object = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        value = raw
    if _too_deep(value):
        raise argparse.ArgumentTypeError(f"the value for {path[:40]} nests too deep")
    return keys, value


def merge_patch(text: str) -> dict[str, object]:
    """argparse `type=` for --patch: a JSON object, an RFC 7386 merge patch (null removes)."""
    if len(text) > PATCH_CHARS_MAX:
        raise argparse.ArgumentTypeError(f"is over {PATCH_CHARS_MAX:,} characters")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not JSON") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            'must be a JSON object (a merge patch, e.g. {"customer": {"id": "c2"}})'
        )
    if _too_deep(value):
        raise argparse.ArgumentTypeError(f"nests deeper than {JSON_DEPTH_MAX}")
    return value


class DlqListReply(Reply):
    listing: DlqListing
    heading: str = "newest first"
    replay_preview: bool = False

    @property
    def nothing_to_do(self) -> bool:
        return self.replay_preview and not self.listing.entries

    def view(self) -> list[Block]:
        li = self.listing
        if not li.entries:
            tail = "; nothing to replay" if self.replay_preview else ""
            return [Note(mark=Mark.INFO, text=f"'{li.dlq}' is empty{tail}")]
        return [
            Note(
                mark=Mark.INFO, text=f"'{li.dlq}' holds {plural(li.depth, 'job')}; {self.heading}"
            ),
            Table(
                columns=["job", "name", "from", "by", "when", "why"],
                rows=[
                    Row(
                        cells=[
                            e.job_id,
                            e.name,
                            e.from_state or "-",
                            e.quarantined_by or "-",
                            when(e.quarantined_at),
                            e.quarantine_reason or "-",
                        ]
                    )
                    for e in li.entries
                ],
            ),
        ]


class DlqShowReply(Reply):
    entry: DlqEntry

    def view(self) -> list[Block]:
        e = self.entry
        blocks: list[Block] = [
            Fields(
                items=[
                    ("job", e.job_id),
                    ("name", e.name),
                    ("quarantined", f"{when(e.quarantined_at)} by {e.quarantined_by or '-'}"),
                    ("why", e.quarantine_reason or "-"),
                    ("was", f"{e.from_state or '-'} in '{e.from_queue or '-'}'"),
                    ("attempts made", str(e.attempts_made)),
                    ("original failure", e.original_failed_reason or "-"),
                    ("enqueued", when(e.timestamp)),
                ]
            ),
            Heading(text="data (the job's payload)"),
            Code(text=json.dumps(e.data, indent=2, ensure_ascii=False)[:2500]),
        ]
        if e.stacktrace:
            blocks += [
                Heading(text="the job's own stack trace (from its worker, when it last failed)"),
                Code(text=e.stacktrace[-1][:1500]),
            ]
        return blocks


def _changes_table(changes: Sequence[DataChange]) -> Table:
    return Table(
        columns=["path", "before", "after"],
        rows=[Row(cells=[c.path, c.before or "(none)", c.after or "(removed)"]) for c in changes],
    )


class DlqReplayOnePreview(Reply):
    """`dlq replay QUEUE JOB_ID`'s question: the job, and the diff its edit makes."""

    queue: str
    entry: DlqEntry
    changes: list[DataChange] = Field(default_factory=list)

    def view(self) -> list[Block]:
        e = self.entry
        edited = " with its data edited" if self.changes else ", its data as it is"
        blocks: list[Block] = [
            Note(
                mark=Mark.INFO,
                text=f"replay would put job {e.job_id} ({e.name}) back into '{self.queue}'{edited}",
            ),
            Fields(
                items=[
                    ("quarantined", f"{when(e.quarantined_at)} by {e.quarantined_by or '-'}"),
                    ("why", e.quarantine_reason or "-"),
                    ("original failure", e.original_failed_reason or e.failed_reason or "-"),
                ]
            ),
        ]
        if self.changes:
            blocks += [
                Heading(text="what changes in its data"),
                _changes_table(self.changes),
                Note(
                    mark=Mark.INFO,
                    text="the data before the edit stays on the replayed job (qo.originalData; "
                    "`job show` shows it)",
                ),
            ]
        return blocks


class DlqReplayReply(Reply):
    result: ReplayResult
    changes: list[DataChange] = Field(default_factory=list)
    """For one job replayed by id with --set/--patch: what changed in its data."""

    def jobs_moved(self) -> dict[str, int]:
        return {"replayed": len(self.result.replayed)} if self.result.replayed else {}

    def view(self) -> list[Block]:
        r = self.result
        if not r.replayed and not r.left:
            return [Note(mark=Mark.INFO, text=f"'{r.dlq}' is empty; nothing to replay")]
        blocks: list[Block] = [
            Note(
                mark=Mark.OK if r.replayed else Mark.INFO,
                text=f"{plural(len(r.replayed), 'job')} replayed from '{r.dlq}' into '{r.queue}'",
            )
        ]
        if r.replayed:
            blocks.append(
                Fields(
                    items=[
                        ("replayed", ", ".join(f"{j.job_id} ({j.name})" for j in r.replayed[:30]))
                    ]
                )
            )
        if r.left:
            blocks.append(
                Table(
                    columns=["job", "left in the DLQ because"],
                    rows=[Row(mark=Mark.WARN, cells=[j.job_id, j.problem or ""]) for j in r.left],
                )
            )
        if self.changes and r.replayed:
            blocks += [
                Heading(text="changed in its data (the original is kept as qo.originalData)"),
                _changes_table(self.changes),
            ]
        return blocks


def list_parser() -> WordParser:
    parser = WordParser("dlq list", LIST_USAGE)
    parser.add_argument("queue", metavar="QUEUE", help="the queue whose DLQ to list")
    parser.add_argument(
        "--limit",
        type=whole_number,
        metavar="N",
        help="show at most N jobs (default 20, 500 at most)",
    )
    return parser


def show_parser() -> WordParser:
    parser = WordParser("dlq show", SHOW_USAGE)
    parser.add_argument("queue", metavar="QUEUE", help="the queue whose DLQ holds the job")
    parser.add_argument("job_id", metavar="JOB_ID", help="the quarantined job")
    return parser


def replay_parser() -> WordParser:
    parser = WordParser("dlq replay", REPLAY_USAGE)
    parser.add_argument("queue", metavar="QUEUE", help="the queue to put the jobs back into")
    parser.add_argument(
        "job_id",
        metavar="JOB_ID",
        nargs="?",
        help="one quarantined job, by id, instead of the oldest N",
    )
    parser.add_argument(
        "--count",
        type=whole_number,
        metavar="N",
        help="how many of the oldest quarantined jobs (default 10)",
    )
    parser.add_argument(
        "--reset-attempts",
        action="store_true",
        default=None,
        help="a DB queue's row starts again from 0 attempts (a BullMQ job always does)",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        type=assignment,
        metavar="PATH=VALUE",
        help="with JOB_ID: set a value in its data first (customer.id=42; JSON if it parses, "
        f"else text; {SET_MAX} at most)",
    )
    parser.add_argument(
        "--patch",
        type=merge_patch,
        metavar="JSON",
        help="with JOB_ID: a JSON merge patch of its data (RFC 7386: null removes a key)",
    )
    return parser


def parse_list(words: Sequence[str]) -> DlqListRequest:
    return parse_words(DlqListRequest, list_parser(), words)


def parse_show(words: Sequence[str]) -> DlqShowRequest:
    return parse_words(DlqShowRequest, show_parser(), words)


def parse_replay(words: Sequence[str]) -> DlqReplayRequest:
    req = parse_words(DlqReplayRequest, replay_parser(), words)
    if req.job_id is None and (req.sets or req.patch is not None):
        raise UsageError(f"--set and --patch edit one job: name its JOB_ID (usage: {REPLAY_USAGE})")
    if req.job_id is not None and "count" in req.model_fields_set:
        raise UsageError("JOB_ID replays that one job; leave out --count")
    if len(req.sets) > SET_MAX:
        raise UsageError(f"--set: at most {SET_MAX} in one replay (got {len(req.sets)})")
    return req


async def run_list(req: DlqListRequest, ctx: CommandContext) -> DlqListReply:
    return DlqListReply(listing=await ctx.queues.dlq_list(req.queue, limit=req.limit))


async def run_show(req: DlqShowRequest, ctx: CommandContext) -> DlqShowReply:
    return DlqShowReply(entry=await ctx.queues.dlq_show(req.queue, req.job_id))


async def run_replay(req: DlqReplayRequest, ctx: CommandContext) -> DlqReplayReply:
    if req.job_id is not None:
        one, changes = await ctx.queues.dlq_replay_one(
            req.queue, req.job_id, req.edit, actor=ctx.actor
        )
        return DlqReplayReply(result=one, changes=changes)
    result = await ctx.queues.dlq_replay(
        req.queue, count=req.count, reset_attempts=req.reset_attempts
    )
    return DlqReplayReply(result=result)


PREVIEW_ROWS = 15
"""Jobs a replay's preview shows: the count is the DLQ's depth, not a read of every job."""


async def preview_replay(
    req: DlqReplayRequest, ctx: CommandContext
) -> DlqListReply | DlqReplayOnePreview:
    await ctx.queues.guard_change(req.queue)  # a read-only queue: refused before asking
    if req.job_id is not None:
        entry, changes = await ctx.queues.dlq_replay_one_preview(req.queue, req.job_id, req.edit)
        return DlqReplayOnePreview(queue=req.queue, entry=entry, changes=changes)
    shown = min(req.count, PREVIEW_ROWS)
    listing = await ctx.queues.dlq_list(req.queue, limit=shown, oldest_first=True)
    count = min(req.count, listing.depth)
    shown_count = len(listing.entries)
    if count > shown_count:
        heading = (
            f"replay would put the oldest {plural(count, 'job')} back into '{req.queue}' "
            f"(the first {shown_count:,} shown)"
        )
    elif shown_count == 1:
        heading = f"replay would put this job back into '{req.queue}'"
    else:
        heading = f"replay would put these {shown_count:,} jobs back into '{req.queue}'"
    return DlqListReply(listing=listing, heading=heading, replay_preview=True)


register(
    Command(
        name="dlq list",
        usage=LIST_USAGE,
        summary="what is quarantined, why, by whom, when",
        role=Role.VIEWER,
        parse=parse_list,
        run=run_list,
        examples=("dlq list batch-jobs",),
        parser=list_parser,
    )
)
register(
    Command(
        name="dlq show",
        usage=SHOW_USAGE,
        summary="one quarantined job: payload, reason, history",
        role=Role.VIEWER,
        parse=parse_show,
        run=run_show,
        examples=("dlq show batch-jobs 1234",),
        parser=show_parser,
    )
)
register(
    Command(
        name="dlq replay",
        usage=REPLAY_USAGE,
        summary="canary re-enqueue: the oldest N quarantined jobs go back to the queue",
        role=Role.OPERATOR,
        parse=parse_replay,
        run=run_replay,
        examples=(
            "dlq replay batch-jobs --count 10",
            "dlq replay batch-jobs 1234 --set customer.id=cus_2 --set amount.value=1999",
            "dlq replay batch-jobs 1234 --patch '{\"retryOf\": null}'",
        ),
        confirm=lambda req: True,
        preview=preview_replay,
        parser=replay_parser,
    )
)
