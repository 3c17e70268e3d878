"""`job show QUEUE JOB_ID`: one job as it is now, from a BullMQ queue or the DB queue.

Everything a person needs to judge one job without redis-cli: its data and options, its
attempts, the latest failure and stack trace (newest first: Bull Board #862), its logs
(the newest 50 and how many in all), progress, timestamps, and a flow's parent or
children. A payload too long for a chat message is cut with a note; in Slack the whole job
is attached as a JSON file beside the reply (an `Attachment` block)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from bot.queues.models import JobChildren, JobDetail
from bot.roles import Role
from bot.text import plural
from commands.context import CommandContext
from commands.dlq import when
from commands.parsing import JobId, QueueName, Request, WordParser, parse_words
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Attachment, Block, Code, Fields, Heading, Mark, Note

USAGE = "job show QUEUE JOB_ID"
DATA_CHARS = 2_500
"""A payload shown in a reply is cut here (with a note); `--json` has all of it."""


class JobShowRequest(Request):
    queue: QueueName
    job_id: JobId


ATTACH_CHARS = 1_000_000
"""The largest payload attached whole in Slack (the file is built on the event loop, each
time the view is drawn); past it, `--json` is the way to all of it."""
LOG_LINE_CHARS = 300
"""A log line shown is cut here; `--json` has the lines whole (the newest 50)."""
STACK_CHARS = 1_500
OPTS_CHARS = 1_000


def _json_text(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _attempts(j: JobDetail) -> str:
    """Made, of how many allowed (opts.attempts), and started where it differs (a stall)."""
    allowed = j.opts.get("attempts")
    text = str(j.attempts) + (f" of {allowed}" if isinstance(allowed, int) else "")
    if j.attempts_started is not None and j.attempts_started != j.attempts:
        text += f" ({j.attempts_started} started)"
    return text


def _children(c: JobChildren) -> list[tuple[str, str]]:
    def line(count: int, keys: Sequence[str]) -> str:
        shown = ", ".join(keys)
        more = count - len(keys)
        return (
            f"{count:,}"
            + (f": {shown}" if shown else "")
            + (f" (+{more:,} more)" if more > 0 else "")
        )

    items = [
        ("pending", line(c.pending, c.pending_keys)),
        ("processed", line(c.processed, c.processed_keys)),
    ]
    if c.failed:
        items.append(("failed", line(c.failed, c.failed_keys)))
    if c.ignored:
        reasons = [f"{k} ({_cut(v, 80)})" for k, v in c.ignored_reasons.items()]
        items.append(("failed, ignored", line(c.ignored, reasons)))
    return items


class JobShowReply(Reply):
    job: JobDetail

    def view(self) -> list[Block]:
        j = self.job
        state = j.state if j.status in (None, j.state) else f"{j.state} (status '{j.status}')"
        items = [
            ("job", j.job_id),
            ("queue", j.shown),
            ("state", state + (" - in the DLQ" if j.in_dlq else "")),
            ("type" if j.kind == "postgres" else "name", j.job_name),
            ("attempts", _attempts(j)),
        ]
        if j.progress not in (None, 0, ""):
            items.append(("progress", _cut(json.dumps(j.progress, default=str), 200)))
        if j.priority:
            items.append(("priority", str(j.priority)))
        if j.delay_ms:
            items.append(("delay", f"{j.delay_ms:,} ms"))
        items.append(("created", when(j.created_ms)))
        if j.run_after_ms is not None:
            items.append(("run after", when(j.run_after_ms)))
        if j.processed_ms is not None:
            items.append(("processed", when(j.processed_ms)))
        if j.finished_ms is not None:
            items.append(("finished", when(j.finished_ms)))
        if j.updated_ms is not None:
            items.append(("updated", when(j.updated_ms)))
        if j.processed_by:
            items.append(("taken by", j.processed_by))
        if j.parent_key:
            items.append(("parent (flow)", j.parent_key))
        items.append(("latest failure", j.failed_reason or "-"))
        data = _json_text(j.data)
        blocks: list[Block] = [
            Fields(items=items),
            Heading(text="data (the job's payload)"),
            Code(text=data[:DATA_CHARS]),
        ]
        if len(data) > DATA_CHARS:
            blocks.append(
                Note(
                    mark=Mark.INFO,
                    text=f"payload cut at {DATA_CHARS:,} of {len(data):,} characters; "
                    "--json has all of it",
                )
            )
            if len(data) <= ATTACH_CHARS:
                blocks.append(
                    Attachment(
                        filename=f"job-{j.job_id}.json"[:120],
                        content=_json_text(j.model_dump(mode="json", by_alias=True)),
                        title=f"job {j.job_id} in {j.shown}, whole",
                    )
                )
        if j.original_data is not None:
            blocks += [
                Heading(text="the data before an edited replay (qo.originalData)"),
                Code(text=_cut(_json_text(j.original_data), DATA_CHARS)),
            ]
        if j.opts:
            blocks += [Heading(text="options"), Code(text=_cut(_json_text(j.opts), OPTS_CHARS))]
        if j.children is not None:
            blocks += [
                Heading(text=f"children (a flow parent of {j.children.total:,})"),
                Fields(items=_children(j.children)),
            ]
        if j.stacktrace:
            blocks += [
                Heading(text="the latest stack trace (from its worker)"),
                Code(text=j.stacktrace[0][:STACK_CHARS]),
            ]
            if len(j.stacktrace) > 1:
                earlier = len(j.stacktrace) - 1
                blocks.append(
                    Note(
                        mark=Mark.INFO,
                        text=f"{plural(earlier, 'earlier stack trace')} kept; --json has them, "
                        "newest first",
                    )
                )
        if j.logs_total:
            shown = len(j.logs)
            head = (
                f"logs (the newest {shown:,} of {j.logs_total:,})"
                if j.logs_total > shown
                else f"logs ({j.logs_total:,})"
            )
            blocks += [
                Heading(text=head),
                Code(
                    text="\n".join(_cut(" ".join(line.split()), LOG_LINE_CHARS) for line in j.logs)
                ),
            ]
        return blocks


def parser() -> WordParser:
    parser = WordParser("job show", USAGE)
    parser.add_argument("queue", metavar="QUEUE", help="the queue (or the DB queue's table)")
    parser.add_argument("job_id", metavar="JOB_ID", help="the job's id (a DB row's id)")
    return parser


def parse(words: Sequence[str]) -> JobShowRequest:
    return parse_words(JobShowRequest, parser(), words)


async def run(req: JobShowRequest, ctx: CommandContext) -> JobShowReply:
    return JobShowReply(job=await ctx.queues.job(req.queue, req.job_id))


register(
    Command(
        name="job show",
        usage=USAGE,
        summary="one job as it is now: data, attempts, the latest failure, logs, flow",
        role=Role.VIEWER,
        parse=parse,
        run=run,
        examples=("job show batch-jobs 42", "job show queue_jobs 6f1c…"),
        parser=parser,
    )
)
