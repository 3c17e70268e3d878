"""`failures QUEUE`, `find QUEUE [filters]`, `promote QUEUE [ID|--all|filters]` and
`remove QUEUE [filters] [--purge]`; and the filters `retry` and `quarantine` take too.

One set of filters (FilterRequest, add_filter_arguments) selects jobs for `find` and for
every filtered action, so what `find` lists is exactly what the action would take (the
preview shows it before anything changes; `--dry-run` shows it and stops). The scan is
bounded (`--scan`, 10,000 jobs by default) and says how far it got.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from bot.durations import humanize_age_ms
from bot.errors import Refused, UsageError
from bot.patterns import compile_user_pattern
from bot.queues.models import FailureReport, FilteredActionResult, FindResult, JobFilter, ScanStats
from bot.roles import Role
from bot.text import plural
from commands.context import CommandContext
from commands.parsing import (
    JobId,
    QueueName,
    Regex,
    Request,
    WordParser,
    duration_argument,
    parse_words,
    whole_number,
)
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Block, Fields, Mark, Note, Row, Table

STATE_WORDS = (
    "failed",
    "active",
    "waiting",
    "paused",
    "prioritized",
    "delayed",
    "waiting-children",
    "completed",
)
DEFAULT_SCAN = 10_000
MAX_SCAN = 1_000_000
FAILURES_SCAN = 1_000
FIND_LIMIT = 20
ACTION_LIMIT = 100
TEXT_CHARS = 200
Req = TypeVar("Req", bound=Request)
SHOWN = 15
"""Matches a preview or a result lists (all of them are in --json)."""


def _cluster(value: str) -> str:
    key = value.strip().lower()
    if len(key) != 8 or any(c not in "0123456789abcdef" for c in key):
        raise ValueError(f"'{value[:40]}' is not a cluster key (8 hex digits, from `failures`)")
    return key


def _data_path(value: str) -> str:
    path, sep, wanted = value.partition("=")
    if not sep or not path.strip() or any(not p for p in path.strip().split(".")):
        raise ValueError(f"'{value[:40]}' is not PATH=VALUE (e.g. user.id=42)")
    if len(path) > TEXT_CHARS or len(wanted) > TEXT_CHARS:
        raise ValueError(f"the path and the value are at most {TEXT_CHARS} characters each")
    return value


def _states(values: list[str]) -> list[str]:
    for value in values:
        if value not in STATE_WORDS:
            raise ValueError(
                f"'{value[:40]}' is not a job state; use one of {', '.join(STATE_WORDS)}"
            )
    return values


ClusterKey = Annotated[str, AfterValidator(_cluster)]
DataPath = Annotated[str, AfterValidator(_data_path)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=TEXT_CHARS)]
States = Annotated[list[str], AfterValidator(_states)]


class FilterRequest(Request):
    """The filters; every given one must hold."""

    queue: QueueName
    state: States = Field(default_factory=list)
    name: Text | None = None
    match_id: JobId | None = None
    reason_regex: Regex | None = None
    data: Text | None = None
    data_path: DataPath | None = None
    older_than_ms: int | None = Field(None, ge=1)
    cluster: ClusterKey | None = None
    limit: int | None = Field(None, ge=1, le=MAX_SCAN)
    scan: int = Field(DEFAULT_SCAN, ge=1, le=MAX_SCAN)
    dry_run: bool = False

    @property
    def filtered(self) -> bool:
        """A filter was given: the request selects jobs (the filtered path)."""
        return bool(
            self.state
            or self.name
            or self.match_id
            or self.reason_regex
            or self.data
            or self.data_path
            or self.older_than_ms
            or self.cluster
        )

    def job_filter(self, default_limit: int) -> JobFilter:
        path = None
        if self.data_path:
            where, _, wanted = self.data_path.partition("=")
            path = (where.strip(), wanted)
        return JobFilter(
            states=tuple(self.state),
            name=self.name,
            job_id=self.match_id,
            reason=compile_user_pattern(self.reason_regex) if self.reason_regex else None,
            data_text=self.data,
            data_path=path,
            older_than_ms=self.older_than_ms,
            cluster=self.cluster,
            limit=self.limit or default_limit,
            scan=self.scan,
        )

    def described(self) -> str:
        """The filters in words, for a reply: "state failed, name send-email"."""
        parts = []
        if self.cluster:
            parts.append(f"cluster {self.cluster}")
        if self.state:
            parts.append("state " + "/".join(self.state))
        if self.name:
            parts.append(f"name {self.name}")
        if self.match_id:
            parts.append(f"id {self.match_id}")
        if self.reason_regex:
            parts.append(f"reason /{self.reason_regex}/")
        if self.data:
            parts.append(f"data containing {self.data!r}")
        if self.data_path:
            parts.append(f"data {self.data_path}")
        if self.older_than_ms:
            parts.append(f"older than {humanize_age_ms(self.older_than_ms)}")
        return ", ".join(parts) or "no filter"


FILTER_DESTS = (
    "state",
    "name",
    "match_id",
    "reason_regex",
    "data",
    "data_path",
    "older_than_ms",
    "cluster",
    "limit",
    "scan",
    "dry_run",
)


def add_filter_arguments(
    parser: WordParser,
    *,
    reason_flag: str | None = "--reason",
    limit: bool = True,
    suppress: bool = False,
    dry_run: bool = True,
) -> None:
    """The filter options on `parser`. `reason_flag` None: the command has its own (quarantine
    keeps --failed-matching, its --reason being the operator's note). `limit` False: the
    command has its own --limit. `suppress`: an option not typed is absent from the parsed
    words (argparse.SUPPRESS), so a command's request without filters stays what it was
    (parse_plain_or_filtered)."""
    absent: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    add = parser.add_argument
    states = ", ".join(STATE_WORDS)
    add("--state", action="append", metavar="S", help=f"only jobs in state S: {states}", **absent)
    add("--name", metavar="N", help="only jobs named N", **absent)
    add("--id", dest="match_id", metavar="ID", help="only the job ID", **absent)
    if reason_flag is not None:
        add(
            reason_flag,
            dest="reason_regex",
            metavar="REGEX",
            help="only jobs whose failure reason matches REGEX (RE2)",
            **absent,
        )
    add("--data", metavar="TEXT", help="only jobs whose payload JSON contains TEXT", **absent)
    add(
        "--data-path",
        dest="data_path",
        metavar="PATH=VALUE",
        help="only jobs whose payload has VALUE at PATH (user.id=42; numbers as numbers)",
        **absent,
    )
    add(
        "--older-than",
        dest="older_than_ms",
        type=duration_argument,
        metavar="AGE",
        help="only jobs created more than AGE ago (30m, 1h, 2d)",
        **absent,
    )
    add(
        "--cluster",
        metavar="K",
        help="only failed jobs of the failure cluster K (the key `failures` shows)",
        **absent,
    )
    if limit:
        add("--limit", type=whole_number, metavar="N", help="at most N jobs", **absent)
    add(
        "--scan",
        type=whole_number,
        metavar="N",
        help=f"look at most at the newest N jobs (default {DEFAULT_SCAN:,})",
        **absent,
    )
    if dry_run:
        add(
            "--dry-run",
            dest="dry_run",
            action="store_true",
            help="show what would be selected; change nothing",
            **absent,
        )


def parse_plain_or_filtered(
    plain: type[Req],
    filtered: type[Any],
    make_parser: Callable[[], WordParser],
    words: Sequence[str],
    *,
    own: Sequence[str] = (),
) -> Any:
    """`plain` (the command's request as it always was) when no filter option is typed,
    else `filtered` (which takes the plain forms too): the words a command took before its
    filters existed still make exactly the request they made. `own`: options of the plain
    request that FILTER_DESTS also names (quarantine's --limit)."""
    try:
        typed = vars(make_parser().parse_args(list(words)))
    except (UsageError, argparse.ArgumentError):
        typed = {}  # parse_words says what is wrong, in its words
    given = any(typed.get(dest) is not None for dest in FILTER_DESTS if dest not in own)
    return parse_words(filtered if given else plain, make_parser(), words)


def scan_words(scan: ScanStats) -> str:
    """How far a scan got, in words: "looked at 10,000 of 250,000 jobs (failed, waiting);
    stopped at the --scan bound"."""
    text = f"looked at {scan.looked:,} of {plural(scan.total, 'job')} ({', '.join(scan.states)})"
    if scan.stopped_by == "limit":
        text += "; stopped at the --limit"
    elif scan.stopped_by == "scan":
        text += "; stopped at the --scan bound: raise --scan to look further"
    if scan.too_large:
        text += f"; {plural(scan.too_large, 'payload')} too large to search by data"
    return text


def _age(now_ms: int, at: int | None) -> str:
    return humanize_age_ms(now_ms - at) if at else "-"


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def job_rows(jobs: Sequence[Any], now_ms: int) -> Table:
    return Table(
        columns=["id", "name", "state", "age", "attempts", "reason"],
        rows=[
            Row(
                mark=Mark.FAILING if j.state == "failed" else None,
                cells=[
                    j.job_id,
                    j.job_name,
                    j.state,
                    _age(now_ms, j.timestamp),
                    str(j.attempts),
                    (j.failed_reason or "")[:80],
                ],
            )
            for j in jobs[:SHOWN]
        ],
    )


# -- find --------------------------------------------------------------------------------

FIND_USAGE = (
    "find QUEUE [--state S ...] [--name N] [--id ID] [--reason REGEX] [--data TEXT] "
    "[--data-path PATH=VALUE] [--older-than AGE] [--cluster K] [--limit N] [--scan N]"
)


class FindRequest(FilterRequest):
    pass


class FindReply(Reply):
    result: FindResult
    filters: str
    now_ms: int = Field(default_factory=_now_ms, exclude=True)

    def view(self) -> list[Block]:
        r = self.result
        found = plural(len(r.jobs), "job")
        head = Note(
            mark=Mark.INFO,
            text=f"{found} in '{r.shown}' {'matches' if len(r.jobs) == 1 else 'match'} "
            f"{self.filters}; {scan_words(r.scan)}",
        )
        if not r.jobs:
            return [head, Note(mark=Mark.WARN, text=r.note)] if r.note else [head]
        blocks: list[Block] = [head, job_rows(r.jobs, self.now_ms)]
        if len(r.jobs) > SHOWN:
            blocks.append(Note(mark=Mark.INFO, text=f"and {len(r.jobs) - SHOWN} more (--json)"))
        return blocks


def find_parser() -> WordParser:
    parser = WordParser("find", FIND_USAGE)
    parser.add_argument("queue", metavar="QUEUE", help="the queue to search")
    add_filter_arguments(parser, dry_run=False)  # find changes nothing
    return parser


def parse_find(words: Sequence[str]) -> FindRequest:
    return parse_words(FindRequest, find_parser(), words)


async def run_find(req: FindRequest, ctx: CommandContext) -> FindReply:
    result = await ctx.queues.find(req.queue, req.job_filter(FIND_LIMIT))
    return FindReply(result=result, filters=req.described())


# -- failures ----------------------------------------------------------------------------

FAILURES_USAGE = "failures QUEUE [--scan N]"


class FailuresRequest(Request):
    queue: QueueName
    scan: int = Field(FAILURES_SCAN, ge=1, le=MAX_SCAN)


class FailuresReply(Reply):
    report: FailureReport
    now_ms: int = Field(default_factory=_now_ms, exclude=True)

    def view(self) -> list[Block]:
        r = self.report
        if not r.clusters:
            return [Note(mark=Mark.INFO, text=f"no failed job in '{r.shown}'")]
        blocks: list[Block] = [
            Note(
                mark=Mark.FAILING,
                text=f"{plural(r.scan.looked, 'failed job')} of '{r.shown}' in "
                f"{plural(len(r.clusters), 'cluster')} ({scan_words(r.scan)})",
            ),
            Table(
                columns=["key", "jobs", "last seen", "first seen", "names", "sample", "reason"],
                rows=[
                    Row(
                        cells=[
                            c.key,
                            f"{c.count:,}",
                            _age(self.now_ms, c.last_seen_ms),
                            _age(self.now_ms, c.first_seen_ms),
                            ", ".join(t.key for t in c.names[:3]),
                            c.sample_id,
                            c.text[:100],
                        ]
                    )
                    for c in r.clusters
                ],
            ),
        ]
        key = r.clusters[0].key
        blocks.append(
            Note(
                mark=Mark.INFO,
                text=f"act on one: quarantine {r.shown} --cluster {key} | "
                f"retry {r.shown} --cluster {key} | find {r.shown} --cluster {key}",
            )
        )
        return blocks


def failures_parser() -> WordParser:
    parser = WordParser("failures", FAILURES_USAGE)
    parser.add_argument("queue", metavar="QUEUE", help="the queue whose failures to group")
    parser.add_argument(
        "--scan",
        type=whole_number,
        metavar="N",
        help=f"group the newest N failed jobs (default {FAILURES_SCAN:,})",
    )
    return parser


def parse_failures(words: Sequence[str]) -> FailuresRequest:
    return parse_words(FailuresRequest, failures_parser(), words)


async def run_failures(req: FailuresRequest, ctx: CommandContext) -> FailuresReply:
    return FailuresReply(report=await ctx.queues.failures(req.queue, scan=req.scan))


# -- the filtered actions ----------------------------------------------------------------

VERBS = {
    "retry": ("retry", "retried", "moved back to waiting"),
    "quarantine": ("quarantine", "quarantined", "moved to '{dlq}', payload kept"),
    "remove": ("remove", "removed", "moved to '{dlq}' (undo: dlq replay {queue})"),
    "purge": ("delete for good", "deleted", "gone for good"),
    "promote": ("promote", "promoted", "moved from delayed to waiting"),
}


class FilteredActionReply(Reply):
    """A filtered action's preview (`preview` True: nothing changed yet), its dry run, or
    its outcome."""

    result: FilteredActionResult
    filters: str
    preview: bool = False
    now_ms: int = Field(default_factory=_now_ms, exclude=True)

    @property
    def nothing_to_do(self) -> bool:
        return not self.result.selected

    def jobs_moved(self) -> dict[str, int]:
        """`quarantine` with filters: the jobs it moved (a preview or dry run moved none)."""
        r = self.result
        if r.action != "quarantine" or self.preview or r.dry_run or not r.done:
            return {}
        return {"quarantined": len(r.done)}

    def view(self) -> list[Block]:
        r = self.result
        verb, done_word, where = VERBS[r.action]
        count = plural(len(r.selected), "job")
        if not r.selected:
            return [
                Note(
                    mark=Mark.INFO,
                    text=f"no job in '{r.shown}' matches {self.filters} "
                    f"({scan_words(r.scan)}); nothing to {verb}",
                )
            ]
        if self.preview or r.dry_run:
            lead = "dry run: would" if r.dry_run else "would"
            blocks: list[Block] = [
                Note(
                    mark=Mark.WARN,
                    text=f"{lead} {verb} {count} of '{r.shown}' matching {self.filters} "
                    f"({scan_words(r.scan)})",
                ),
                job_rows(r.selected, self.now_ms),
            ]
            return blocks
        blocks = [
            Note(
                mark=Mark.OK if r.done else Mark.INFO,
                text=f"{plural(len(r.done), 'job')} of '{r.shown}' {done_word}: "
                + where.format(dlq=r.dlq or "", queue=r.shown)
                + (f"; {len(r.skipped)} not" if r.skipped else ""),
            )
        ]
        if r.done:
            shown = ", ".join(r.done[:30])
            more = f" and {len(r.done) - 30} more" if len(r.done) > 30 else ""
            blocks.append(Fields(items=[(done_word, shown + more)]))
        if r.skipped:
            blocks.append(
                Table(
                    columns=["job", f"not {done_word} because"],
                    rows=[Row(mark=Mark.WARN, cells=[s.job_id, s.problem]) for s in r.skipped[:20]],
                )
            )
        return blocks


async def run_filtered(
    req: FilterRequest,
    ctx: CommandContext,
    action: str,
    *,
    preview: bool = False,
    reason: str | None = None,
    states: tuple[str, ...] = (),
) -> FilteredActionReply:
    """The filtered path every action shares: `preview` (the confirmation's) and
    `--dry-run` select and change nothing. `states`: what is scanned without --state
    (retry: failed jobs; promote: delayed ones)."""
    flt = req.job_filter(ACTION_LIMIT)
    if states and not flt.states:
        flt = replace(flt, states=states)
    result = await ctx.queues.filtered_action(
        req.queue,
        action,
        flt,
        actor=ctx.actor,
        reason=reason,
        dry_run=preview or req.dry_run,
    )
    if preview:
        result = result.model_copy(update={"dry_run": False})
    return FilteredActionReply(result=result, filters=req.described(), preview=preview)


# -- promote -----------------------------------------------------------------------------

PROMOTE_USAGE = "promote QUEUE [ID | --all | filters] [--dry-run]"


class PromoteRequest(FilterRequest):
    job_id: JobId | None = None
    all: bool = False

    @model_validator(mode="after")
    def _one_form(self) -> PromoteRequest:
        forms = sum((self.job_id is not None, self.all, self.filtered))
        if forms == 0:
            raise ValueError("give an ID, --all, or filters (e.g. --name N)")
        if forms > 1:
            raise ValueError("give an ID, --all or filters, only one of them")
        if self.state and self.state != ["delayed"]:
            raise ValueError("promote takes delayed jobs; --state can only be delayed")
        return self


class PromoteReply(Reply):
    queue: str
    promoted: int
    job_id: str | None = None
    dry_run: bool = False

    @property
    def nothing_to_do(self) -> bool:
        return self.promoted == 0

    def view(self) -> list[Block]:
        if self.dry_run:
            return [
                Note(
                    mark=Mark.WARN if self.promoted else Mark.INFO,
                    text=f"would promote {plural(self.promoted, 'delayed job')} of "
                    f"'{self.queue}' to waiting",
                )
            ]
        if self.job_id is not None:
            return [
                Note(
                    mark=Mark.OK,
                    text=f"job {self.job_id} of '{self.queue}' promoted: delayed -> waiting",
                )
            ]
        return [
            Note(
                mark=Mark.OK if self.promoted else Mark.INFO,
                text=f"{plural(self.promoted, 'delayed job')} of '{self.queue}' moved to waiting",
            )
        ]


def promote_parser() -> WordParser:
    parser = WordParser("promote", PROMOTE_USAGE)
    parser.add_argument("queue", metavar="QUEUE", help="the queue whose delayed jobs to promote")
    parser.add_argument("job_id", metavar="ID", nargs="?", help="the one delayed job to promote")
    parser.add_argument("--all", action="store_true", help="every delayed job (asks to confirm)")
    add_filter_arguments(parser)
    return parser


def parse_promote(words: Sequence[str]) -> PromoteRequest:
    req = parse_words(PromoteRequest, promote_parser(), words)
    return req.model_copy(update={"state": ["delayed"]}) if req.filtered else req


async def _promote(req: PromoteRequest, ctx: CommandContext, *, preview: bool) -> Reply:
    if req.filtered:
        return await run_filtered(req, ctx, "promote", preview=preview)
    if req.all and (preview or req.dry_run):
        count = await ctx.queues.delayed_count(req.queue)
        return PromoteReply(queue=req.queue, promoted=count, dry_run=True)
    if req.job_id is not None and req.dry_run:
        return PromoteReply(queue=req.queue, promoted=1, job_id=req.job_id, dry_run=True)
    promoted = await ctx.queues.promote(req.queue, req.job_id)
    return PromoteReply(queue=req.queue, promoted=promoted, job_id=req.job_id)


async def run_promote(req: PromoteRequest, ctx: CommandContext) -> Reply:
    return await _promote(req, ctx, preview=False)


async def preview_promote(req: PromoteRequest, ctx: CommandContext) -> Reply:
    return await _promote(req, ctx, preview=True)


# -- remove ------------------------------------------------------------------------------

REMOVE_USAGE = "remove QUEUE filters [--purge] [--dry-run]"


class RemoveRequest(FilterRequest):
    purge: bool = Field(False, description="delete for good instead of to the DLQ (admin)")

    @model_validator(mode="after")
    def _needs_filter(self) -> RemoveRequest:
        if not self.filtered:
            raise ValueError("give filters (e.g. --state failed --name N, or --cluster K)")
        return self


def remove_parser() -> WordParser:
    parser = WordParser("remove", REMOVE_USAGE)
    parser.add_argument("queue", metavar="QUEUE", help="the queue to remove jobs from")
    add_filter_arguments(parser)
    parser.add_argument(
        "--purge",
        action="store_true",
        help="delete the jobs for good (admin) instead of moving them to the DLQ",
    )
    return parser


def parse_remove(words: Sequence[str]) -> RemoveRequest:
    return parse_words(RemoveRequest, remove_parser(), words)


def _remove_action(req: RemoveRequest, ctx: CommandContext) -> str:
    if req.purge and ctx.role < Role.ADMIN:
        raise Refused(
            "remove --purge deletes jobs for good and needs the admin role; without "
            "--purge they go to the DLQ, where `dlq replay` can bring them back"
        )
    return "purge" if req.purge else "remove"


async def run_remove(req: RemoveRequest, ctx: CommandContext) -> FilteredActionReply:
    return await run_filtered(req, ctx, _remove_action(req, ctx), reason="removed")


async def preview_remove(req: RemoveRequest, ctx: CommandContext) -> FilteredActionReply:
    return await run_filtered(req, ctx, _remove_action(req, ctx), preview=True, reason="removed")


register(
    Command(
        name="failures",
        usage=FAILURES_USAGE,
        summary="what the failures have in common: failed jobs grouped by normalised reason",
        role=Role.VIEWER,
        parse=parse_failures,
        run=run_failures,
        examples=("failures batch-jobs", "failures batch-jobs --scan 5000"),
        parser=failures_parser,
    )
)
register(
    Command(
        name="find",
        usage=FIND_USAGE,
        summary="find jobs by state, name, id, reason, payload or age (a bounded scan)",
        role=Role.VIEWER,
        parse=parse_find,
        run=run_find,
        examples=(
            "find batch-jobs --id 1234",
            "find batch-jobs --state failed --reason ECONNRESET --older-than 1h",
            "find batch-jobs --data-path user.id=42",
        ),
        parser=find_parser,
    )
)
register(
    Command(
        name="promote",
        usage=PROMOTE_USAGE,
        summary="move delayed jobs to waiting now: one, all, or those matching filters",
        role=Role.OPERATOR,
        parse=parse_promote,
        run=run_promote,
        confirm=lambda req: (req.all or req.filtered) and not req.dry_run,
        preview=preview_promote,
        examples=("promote batch-jobs 1234", "promote batch-jobs --all", "promote q --name sync"),
        parser=promote_parser,
    )
)
register(
    Command(
        name="remove",
        usage=REMOVE_USAGE,
        summary="remove the jobs matching filters to the DLQ (undo: dlq replay), or --purge",
        role=Role.OPERATOR,
        parse=parse_remove,
        run=run_remove,
        confirm=lambda req: not req.dry_run,
        preview=preview_remove,
        examples=(
            "remove batch-jobs --cluster 3f2a91c0",
            "remove batch-jobs --state failed --older-than 7d --purge",
        ),
        parser=remove_parser,
    )
)
