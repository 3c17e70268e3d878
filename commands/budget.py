"""`budget [--share 50]`: Redis commands a month, idle, for the current mode and cadence,
against the plan's limit (REDIS_MONTHLY_COMMANDS, Upstash free tier: 500,000).

The idle tick's cost is what the bot measured for its own last idle tick (it counts the
commands it sends; one, by design); the always-on figure is npm bullmq 5's idle Worker,
measured by bench/idle_tick.py (26 commands a minute per queue).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from bot.durations import format_duration_ms
from bot.roles import Role
from commands.context import CommandContext
from commands.parsing import Request, WordParser, parse_words
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Block, Fields, Mark, Note

MONTH_MS = 30 * 24 * 3_600_000
WORKER_IDLE_PER_MINUTE = 26  # npm bullmq 5.81.5, one idle Worker (bench/idle_tick.py)
DEFAULT_TICK_COST = 1


class BudgetRequest(Request):
    share: float = Field(50.0, gt=0, le=100)


class BudgetReply(Reply):
    mode: str
    every_ms: int
    queues: int
    tick_cost: int
    tick_cost_measured: bool
    limit: int
    share: float

    @property
    def cron_month(self) -> int:
        return math.ceil(MONTH_MS / self.every_ms) * self.tick_cost

    @property
    def always_on_month(self) -> int:
        return self.queues * WORKER_IDLE_PER_MINUTE * MONTH_MS // 60_000

    @property
    def fastest_every_ms(self) -> int:
        """The shortest cadence (whole seconds) whose idle cost fits the share of the limit."""
        allowed = self.limit * self.share / 100
        return max(1000, math.ceil(MONTH_MS * self.tick_cost / allowed / 1000) * 1000)

    def data(self) -> dict[str, Any]:
        current = self.cron_month if self.mode == "cron" else self.always_on_month
        return {
            "mode": self.mode,
            "every": format_duration_ms(self.every_ms),
            "idleTickCommands": self.tick_cost,
            "idleTickMeasured": self.tick_cost_measured,
            "cronIdlePerMonth": self.cron_month,
            "alwaysOnIdlePerMonth": self.always_on_month,
            "currentIdlePerMonth": current,
            "monthlyLimit": self.limit,
            "share": self.share,
            "fastestEvery": format_duration_ms(self.fastest_every_ms),
        }

    def view(self) -> list[Block]:
        d = self.data()
        pct = 100 * d["currentIdlePerMonth"] / self.limit
        return [
            Note(
                mark=Mark.OK if pct <= self.share else Mark.WARN,
                text=f"idle {d['currentIdlePerMonth']:,} Redis commands a month in "
                f"{self.mode} mode: {pct:.1f}% of {self.limit:,}",
            ),
            Fields(
                items=[
                    (
                        "cron, every " + d["every"],
                        f"{d['cronIdlePerMonth']:,} a month "
                        f"({self.tick_cost} per idle tick, "
                        f"{'measured' if self.tick_cost_measured else 'serve measures it'})",
                    ),
                    (
                        "always-on",
                        f"{d['alwaysOnIdlePerMonth']:,} a month ({self.queues} idle "
                        f"Workers, {WORKER_IDLE_PER_MINUTE} commands a minute each)",
                    ),
                    (f"fastest cadence within {self.share:g}%", d["fastestEvery"]),
                ]
            ),
        ]


def parse(words: Sequence[str]) -> BudgetRequest:
    parser = WordParser("budget", "budget [--share 50]")
    parser.add_argument("--share", type=float)
    return parse_words(BudgetRequest, parser, words)


async def run(req: BudgetRequest, ctx: CommandContext) -> BudgetReply:
    status = await ctx.cron_state().status()
    queues = len(await ctx.queues.queue_names()) or 1
    return BudgetReply(
        mode=status.mode,
        every_ms=status.every_ms,
        queues=queues,
        tick_cost=status.idle_tick_cost or DEFAULT_TICK_COST,
        tick_cost_measured=status.idle_tick_cost is not None,
        limit=ctx.settings.redis_monthly_commands,
        share=req.share,
    )


register(
    Command(
        name="budget",
        usage="budget [--share 50]",
        summary="Redis commands a month when idle, per mode, against REDIS_MONTHLY_COMMANDS",
        role=Role.VIEWER,
        parse=parse,
        run=run,
        examples=("budget", "budget --share 30"),
    )
)
