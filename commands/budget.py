"""`budget [--share 50]`: Redis commands a month, idle, for the current mode and cadence,
against the plan's limit (REDIS_MONTHLY_COMMANDS, Upstash free tier: 500,000).

The idle tick's cost is what the bot measured for its own last idle tick (it counts the
commands it sends; one, by design); the always-on figure is npm bullmq 5's idle Worker,
measured by bench/idle_tick.py (26 commands a minute per queue).

It also says what a person's snapshot costs: one script call (bot/queues/bullmq/lua/snapshot.lua)
on a connection that sends no handshake command (bot/redis_client.py), plus the audit write
when QUEUEOPS_AUDIT_READS is true. tests/test_redis_cost.py checks the figure against what
MONITOR sees a CLI snapshot send.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from bot.durations import format_duration_ms
from bot.queues.bullmq.catalog import SCAN_COUNT, DiscoveryCost
from bot.queues.bullmq.slots import group_for_calls, is_cluster_client
from bot.queues.keys import QueueRef
from bot.roles import Role
from bot.text import plural
from commands.context import CommandContext
from commands.parsing import Request, WordParser, number, parse_words
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Block, Fields, Mark, Note

MONTH_MS = 30 * 24 * 3_600_000
WORKER_IDLE_PER_MINUTE = 26  # npm bullmq 5.81.5, one idle Worker (bench/idle_tick.py)
DEFAULT_TICK_COST = 1


def snapshot_calls(queues: Sequence[QueueRef], *, cluster: bool) -> int:
    """Script calls one `snapshot` sends, whatever the backlog: one per 40 queues (on Redis
    Cluster, per slot too), as bot/queues/bullmq/snapshot.py groups them."""
    return max(len(group_for_calls(queues, cluster=cluster)), 1)


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
    snapshot_calls: int = 1
    audit_reads: bool
    instant: bool = False
    """Instant drains (DRAIN_INSTANT, with a DRAIN_URL): the leader also blocks on the
    queues' markers, `wake_cost` blocking commands a cadence."""
    wake_cost: int = 0
    wake_measured: bool = False
    discovery: DiscoveryCost | None = None
    """The last discovery this process made, when the configuration needs discovery."""
    discover_every_ms: int = 600_000

    @property
    def discovery_month(self) -> int:
        """Discovery's steady cost a month: its SCAN calls every QUEUEOPS_DISCOVER_EVERY (the
        meta checks are paid once per new key)."""
        if self.discovery is None:
            return 0
        return math.ceil(MONTH_MS / self.discover_every_ms) * self.discovery.scan_calls

    @property
    def per_tick(self) -> int:
        """What an idle cadence costs in cron mode: the tick, and the instant drains' wait."""
        return self.tick_cost + (self.wake_cost if self.instant else 0)

    @property
    def cron_month(self) -> int:
        return math.ceil(MONTH_MS / self.every_ms) * self.per_tick + self.discovery_month

    @property
    def always_on_month(self) -> int:
        workers = self.queues * WORKER_IDLE_PER_MINUTE * MONTH_MS // 60_000
        return workers + self.discovery_month

    @property
    def fastest_every_ms(self) -> int:
        """The shortest cadence (whole seconds) whose idle cost fits the share of the limit."""
        allowed = self.limit * self.share / 100
        return max(1000, math.ceil(MONTH_MS * self.per_tick / allowed / 1000) * 1000)

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
            "snapshotCommands": self.snapshot_commands,
            "readsAudited": self.audit_reads,
            "instantDrains": self.instant,
            "wakeCost": self.wake_cost if self.instant else 0,
            "wakeMeasured": self.instant and self.wake_measured,
            "discovery": None
            if self.discovery is None
            else {
                "every": format_duration_ms(self.discover_every_ms),
                "scanCalls": self.discovery.scan_calls,
                "metaChecks": self.discovery.checks,
                "queuesFound": self.discovery.found,
                "perMonth": self.discovery_month,
            },
        }

    @property
    def snapshot_commands(self) -> int:
        """Redis commands one `snapshot` sends (queues configured or already discovered)."""
        return self.snapshot_calls + (1 if self.audit_reads else 0)

    def _snapshot_line(self) -> str:
        what = plural(self.snapshot_calls, "script call") + (
            " + 1 audit write" if self.audit_reads else ""
        )
        what += "; + 1 CLIENT LIST (the workers) when some queue has jobs"
        if not self.audit_reads:
            what += "; reads are not audited (QUEUEOPS_AUDIT_READS=true adds 1)"
        if self.discovery is not None:
            what += (
                "; a process's first one also looks for queues (the discovery line: set "
                "QUEUEOPS_QUEUES to plain names to skip it)"
            )
        return f"{self.snapshot_commands} ({what})"

    def _discovery_line(self) -> str:
        d = self.discovery
        if d is None:
            return "none: QUEUEOPS_QUEUES names every queue"
        every = format_duration_ms(self.discover_every_ms)
        return (
            f"{plural(d.scan_calls, 'SCAN call')} (the whole keyspace, up to {SCAN_COUNT:,} "
            f"keys a call: N keys cost N/{SCAN_COUNT:,}) every {every}, "
            f"{self.discovery_month:,} a month; {plural(d.found, 'queue')} found, "
            f"{plural(d.checks, 'new meta key')} checked once each"
        )

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
                        f"{'measured' if self.tick_cost_measured else 'serve measures it'}"
                        f"{self._wake_part()})",
                    ),
                    ("instant drains", self._instant_line()),
                    (
                        "always-on",
                        f"{d['alwaysOnIdlePerMonth']:,} a month "
                        f"({plural(self.queues, 'idle Worker')}, "
                        f"{WORKER_IDLE_PER_MINUTE} commands a minute each)",
                    ),
                    (f"fastest cadence within {self.share:g}%", d["fastestEvery"]),
                    ("Redis commands per snapshot", self._snapshot_line()),
                    ("queue discovery", self._discovery_line()),
                ]
            ),
        ]

    def _wake_part(self) -> str:
        if not self.instant:
            return ""
        how = "measured" if self.wake_measured else "expected"
        return f", + {self.wake_cost} blocking wait for instant drains, {how}"

    def _instant_line(self) -> str:
        every = format_duration_ms(self.every_ms)
        if not self.instant:
            return f"off (DRAIN_INSTANT=0): a new job waits up to {every} for the tick"
        ticks = math.ceil(MONTH_MS / self.every_ms)
        return (
            f"on: a new job is drained within seconds instead of up to {every}, for "
            f"{ticks * self.wake_cost:,} commands a month (DRAIN_INSTANT=0 saves them)"
        )


def parser() -> WordParser:
    parser = WordParser("budget", "budget [--share 50]")
    parser.add_argument(
        "--share",
        type=number,
        metavar="PERCENT",
        help="the share of the plan's monthly limit idle use may take (default 50)",
    )
    return parser


def parse(words: Sequence[str]) -> BudgetRequest:
    return parse_words(BudgetRequest, parser(), words)


async def run(req: BudgetRequest, ctx: CommandContext) -> BudgetReply:
    status = await ctx.cron_state().status()
    refs = await ctx.queues.queues()
    catalog = ctx.queues.catalog
    return BudgetReply(
        mode=status.mode,
        every_ms=status.every_ms,
        queues=len(refs) or 1,
        tick_cost=status.idle_tick_cost or DEFAULT_TICK_COST,
        tick_cost_measured=status.idle_tick_cost is not None,
        limit=ctx.settings.redis_monthly_commands,
        share=req.share,
        snapshot_calls=snapshot_calls(refs, cluster=is_cluster_client(ctx.queues.redis)),
        audit_reads=ctx.settings.audit_reads,
        instant=ctx.instant_drains,
        wake_cost=status.wake_blocks(status.every_ms, ctx.settings.drain_wake_max_ms),
        wake_measured=status.wake_cost is not None,
        discovery=catalog.last_cost if catalog.needs_discovery else None,
        discover_every_ms=catalog.rediscover_ms,
    )


register(
    Command(
        name="budget",
        usage="budget [--share 50]",
        summary="Redis commands a month when idle, per mode, and what one snapshot costs",
        role=Role.VIEWER,
        parse=parse,
        run=run,
        examples=("budget", "budget --share 30"),
        parser=parser,
    )
)
