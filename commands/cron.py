"""`cron status | history | pause | resume | every 15m`: the bot's drain cron."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import Field
from pydantic.alias_generators import to_camel

from bot.durations import format_duration_ms
from bot.errors import UsageError
from bot.roles import Role
from bot.text import plural
from commands.context import CommandContext
from commands.parsing import (
    Cadence,
    Request,
    WordParser,
    cadence_argument,
    parse_words,
    plain_argparse_message,
    whole_number,
)
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Block, Fields, Mark, Note, Row, Table
from scheduler.state import CronStatus, DrainRun


def iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat() if ms else None


class NoArgs(Request):
    pass


class HistoryRequest(Request):
    count: int = Field(20, ge=1, le=200)


class EveryRequest(Request):
    every_ms: Cadence


class CronStatusReply(Reply):
    status: CronStatus
    drain_url_set: bool
    instant: bool = False
    """DRAIN_INSTANT is on (and a DRAIN_URL set) for this configuration."""
    wake_max_ms: int | None = None

    def instant_drains(self) -> dict[str, Any]:
        """Whether the leader blocks on the queues' markers, and what a cadence of it costs
        (measured by the leader, else what it should cost)."""
        s = self.status
        on = self.instant and s.enabled
        measured = s.wake_cost is not None
        blocks = s.wake_blocks(s.every_ms, self.wake_max_ms)
        return {"on": on, "blocksPerCadence": blocks if on else 0, "measured": on and measured}

    def data(self) -> dict[str, Any]:
        s = self.status
        next_ms = (s.last_tick_ms or 0) + s.every_ms if s.enabled and s.last_tick_ms else None
        return {
            "enabled": s.enabled and self.drain_url_set,
            "mode": s.mode,
            "paused": s.paused,
            "every": format_duration_ms(s.every_ms),
            "everySeconds": s.every_ms // 1000,
            "next": iso(next_ms),
            "last": iso(s.last_tick_ms),
            "lastDrain": iso(s.last_drain_ms),
            "idleTicks": s.idle_ticks,
            "failedStreak": s.failed_streak,
            "leader": s.leader,
            "drainUrlSet": self.drain_url_set,
            "offBecause": self.off_because(),
            "instantDrains": self.instant_drains(),
        }

    def off_because(self) -> list[str]:
        """Every reason the cron does not drain, in the words the text shows."""
        s = self.status
        reasons = []
        if s.mode != "cron":
            reasons.append(f"worker mode is {s.mode}")
        if s.paused:
            reasons.append("paused: cron resume drains again")
        if not self.drain_url_set:
            reasons.append("DRAIN_URL is not set")
        return reasons

    def view(self) -> list[Block]:
        d = self.data()
        state = "on" if d["enabled"] else "off"
        why = f" ({'; '.join(d['offBecause'])})" if d["offBecause"] else ""
        mark = Mark.OK if d["enabled"] else Mark.PAUSED if d["paused"] else Mark.INFO
        return [
            Note(mark=mark, text=f"drain cron {state}{why}, every {d['every']}"),
            Fields(
                items=[
                    ("last tick", d["last"] or "-"),
                    ("next", d["next"] or "-"),
                    ("idle ticks", str(d["idleTicks"])),
                    ("last drain", d["lastDrain"] or "-"),
                    ("failed in a row", str(d["failedStreak"])),
                    ("leader", d["leader"] or "-"),
                    ("instant drains", self._instant_line(d["instantDrains"])),
                ]
            ),
        ]

    def _instant_line(self, instant: dict[str, Any]) -> str:
        if not self.instant:
            return "off (DRAIN_INSTANT=0): a new job waits for the next tick"
        if not instant["on"]:
            return "off while the cron is off"
        how = "measured" if instant["measured"] else "expected"
        return (
            "on: a new job is drained within seconds, a delayed one at its time; "
            f"{plural(instant['blocksPerCadence'], 'blocking command')} a cadence ({how})"
        )


class CronHistoryReply(Reply):
    runs: list[DrainRun]

    def data(self) -> dict[str, Any]:
        return {
            "runs": [
                {**{to_camel(k): v for k, v in r.model_dump().items()}, "at": iso(r.at_ms)}
                for r in self.runs
            ]
        }

    def view(self) -> list[Block]:
        if not self.runs:
            return [Note(mark=Mark.INFO, text="no drains yet (idle ticks are only counted)")]
        return [
            Table(
                columns=["when", "by", "queues", "status", "processed", "failed", "took", "error"],
                rows=[
                    Row(
                        mark=Mark.ERROR if r.error else Mark.OK,
                        cells=[
                            iso(r.at_ms) or "-",
                            "a job's arrival" if r.trigger == "wake" else "the tick",
                            ", ".join(r.queues),
                            str(r.status or "-"),
                            str(r.processed),
                            str(r.failed),
                            f"{r.duration_ms} ms",
                            r.error or "",
                        ],
                    )
                    for r in self.runs
                ],
            )
        ]


class CronChangedReply(Reply):
    text: str

    def view(self) -> list[Block]:
        return [Note(mark=Mark.OK, text=self.text)]


def _no_args(name: str) -> Any:
    def parse(words: Sequence[str]) -> NoArgs:
        return parse_words(NoArgs, WordParser(name, name), words)

    return parse


def history_parser() -> WordParser:
    parser = WordParser("cron history", "cron history [--count 20]")
    parser.add_argument(
        "--count",
        type=whole_number,
        metavar="N",
        help="the last N drains (default 20, 200 at most)",
    )
    return parser


def every_parser() -> WordParser:
    parser = WordParser("cron every", "cron every DURATION (e.g. 15m)")
    parser.add_argument(
        "every_ms",
        metavar="DURATION",
        nargs="+",
        help="the new cadence, 1s to 1d: 30s, 5m, 1h, 1h30m",
    )
    return parser


def parse_history(words: Sequence[str]) -> HistoryRequest:
    return parse_words(HistoryRequest, history_parser(), words)


def parse_every(words: Sequence[str]) -> EveryRequest:
    parser = every_parser()
    # "cron every 5 minutes" is one duration typed as two words: read it whole.
    try:
        namespace = parser.parse_args(list(words))
    except argparse.ArgumentError as err:
        message = plain_argparse_message(str(err), parser)
        raise UsageError(f"{message} (usage: {parser.command_usage})") from None
    typed = " ".join(namespace.every_ms)
    try:
        every_ms = cadence_argument(typed)
    except argparse.ArgumentTypeError as err:
        raise UsageError(f"DURATION: {err} (usage: {parser.command_usage})") from None
    return EveryRequest(every_ms=every_ms)


async def run_status(req: NoArgs, ctx: CommandContext) -> CronStatusReply:
    return CronStatusReply(
        status=await ctx.cron_state().status(),
        drain_url_set=ctx.drain is not None,
        instant=ctx.instant_drains,
        wake_max_ms=ctx.settings.drain_wake_max_ms,
    )


async def run_history(req: HistoryRequest, ctx: CommandContext) -> CronHistoryReply:
    return CronHistoryReply(runs=await ctx.cron_state().history(req.count))


async def run_pause(req: NoArgs, ctx: CommandContext) -> CronChangedReply:
    await ctx.cron_state().set_paused(True)
    return CronChangedReply(text="drain cron paused: ticks still probe, nothing is drained")


async def run_resume(req: NoArgs, ctx: CommandContext) -> CronChangedReply:
    await ctx.cron_state().set_paused(False)
    status = await ctx.cron_state().status()
    still = [
        *([f"worker mode is {status.mode}"] if status.mode != "cron" else []),
        *(["DRAIN_URL is not set"] if ctx.drain is None else []),
    ]
    tail = f" (still off: {'; '.join(still)})" if still else ""
    return CronChangedReply(text=f"drain cron resumed{tail}")


async def run_every(req: EveryRequest, ctx: CommandContext) -> CronChangedReply:
    await ctx.cron_state().set_every(req.every_ms)
    return CronChangedReply(
        text=f"drain cron every {format_duration_ms(req.every_ms)} from the next tick on"
    )


PARSERS = {"cron history": history_parser, "cron every": every_parser}
USAGES = {"cron history": "cron history [--count 20]", "cron every": "cron every DURATION"}

for name, summary, role, parse, run, example in (
    (
        "cron status",
        "the drain cron: on/off, cadence, last and next tick",
        Role.VIEWER,
        _no_args("cron status"),
        run_status,
        "cron status",
    ),
    (
        "cron history",
        "the last drains: queues, HTTP status, processed/failed, duration",
        Role.VIEWER,
        parse_history,
        run_history,
        "cron history",
    ),
    (
        "cron pause",
        "stop draining; ticks still probe",
        Role.OPERATOR,
        _no_args("cron pause"),
        run_pause,
        "cron pause",
    ),
    (
        "cron resume",
        "drain again",
        Role.OPERATOR,
        _no_args("cron resume"),
        run_resume,
        "cron resume",
    ),
    ("cron every", "change the cadence", Role.OPERATOR, parse_every, run_every, "cron every 15m"),
):
    register(
        Command(
            name=name,
            usage=USAGES.get(name, name),
            summary=summary,
            role=role,
            parse=parse,
            run=run,
            examples=(example,),
            parser=PARSERS.get(name),
        )
    )
