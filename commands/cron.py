"""`cron status | history | pause | resume | every 15m`: the bot's drain cron."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from bot.durations import format_duration_ms
from bot.roles import Role
from commands.context import CommandContext
from commands.parsing import Cadence, Request, WordParser, cadence_argument, parse_words
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
        }

    def view(self) -> list[Block]:
        d = self.data()
        state = "on" if d["enabled"] else "off"
        why = (
            ""
            if d["enabled"]
            else (
                " (DRAIN_URL is not set)"
                if not self.drain_url_set
                else " (paused)"
                if d["paused"]
                else f" (worker mode is {d['mode']})"
            )
        )
        return [
            Note(
                mark=Mark.OK if d["enabled"] else Mark.INFO,
                text=f"drain cron {state}{why}, every {d['every']}",
            ),
            Fields(
                items=[
                    ("last tick", d["last"] or "-"),
                    ("next", d["next"] or "-"),
                    ("idle ticks", str(d["idleTicks"])),
                    ("last drain", d["lastDrain"] or "-"),
                    ("failed in a row", str(d["failedStreak"])),
                    ("leader", d["leader"] or "-"),
                ]
            ),
        ]


class CronHistoryReply(Reply):
    runs: list[DrainRun]

    def data(self) -> dict[str, Any]:
        return {"runs": [{**r.model_dump(), "at": iso(r.at_ms)} for r in self.runs]}

    def view(self) -> list[Block]:
        if not self.runs:
            return [Note(mark=Mark.INFO, text="no drains yet (idle ticks are only counted)")]
        return [
            Table(
                columns=["when", "queues", "status", "processed", "failed", "took", "error"],
                rows=[
                    Row(
                        mark=Mark.ERROR if r.error else Mark.OK,
                        cells=[
                            iso(r.at_ms) or "-",
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


def parse_history(words: Sequence[str]) -> HistoryRequest:
    parser = WordParser("cron history", "cron history [--count 20]")
    parser.add_argument("--count", type=int)
    return parse_words(HistoryRequest, parser, words)


def parse_every(words: Sequence[str]) -> EveryRequest:
    parser = WordParser("cron every", "cron every DURATION (e.g. 15m)")
    parser.add_argument("every_ms", metavar="DURATION", type=cadence_argument)
    return parse_words(EveryRequest, parser, words)


async def run_status(req: NoArgs, ctx: CommandContext) -> CronStatusReply:
    return CronStatusReply(
        status=await ctx.cron_state().status(), drain_url_set=ctx.drain is not None
    )


async def run_history(req: HistoryRequest, ctx: CommandContext) -> CronHistoryReply:
    return CronHistoryReply(runs=await ctx.cron_state().history(req.count))


async def run_pause(req: NoArgs, ctx: CommandContext) -> CronChangedReply:
    await ctx.cron_state().set_paused(True)
    return CronChangedReply(text="drain cron paused: ticks still probe, nothing is drained")


async def run_resume(req: NoArgs, ctx: CommandContext) -> CronChangedReply:
    await ctx.cron_state().set_paused(False)
    return CronChangedReply(text="drain cron resumed")


async def run_every(req: EveryRequest, ctx: CommandContext) -> CronChangedReply:
    await ctx.cron_state().set_every(req.every_ms)
    return CronChangedReply(
        text=f"drain cron every {format_duration_ms(req.every_ms)} from the next tick on"
    )


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
        "stop draining (ticks still probe)",
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
            usage=name if name != "cron every" else "cron every DURATION",
            summary=summary,
            role=role,
            parse=parse,
            run=run,
            examples=(example,),
        )
    )
