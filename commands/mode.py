"""`mode` / `mode always-on` / `mode cron [--every 5m]`: the app's WORKER_INPROCESS.

A switch previews the change to the app's environment (secrets redacted) and the idle Redis
commands a month before and after, is confirmed by a person, writes through the backend
(which re-reads first and refuses if anything changed since the preview), verifies, and
moves the drain cron with it: cron mode turns the cron on at the cadence, always-on turns it
off, so nothing consumes twice.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any, Literal

from bot.deploy.base import Backend, diff
from bot.deploy.select import backend_for
from bot.durations import format_duration_ms
from bot.errors import OperationFailed, Refused
from bot.roles import Role
from commands.budget import MONTH_MS, WORKER_IDLE_PER_MINUTE
from commands.context import CommandContext
from commands.parsing import Cadence, Request, WordParser, cadence_argument, parse_words
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Block, Fields, Mark, Note, Row, Table

USAGE = "mode | mode always-on | mode cron [--every 5m]"
INPROCESS = {"cron": "0", "always-on": "1"}


class ModeRequest(Request):
    target: Literal["cron", "always-on"] | None = None
    every_ms: Cadence | None = None
    expect_env: str | None = None


def fingerprint(env: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()[:16]


class ModeReply(Reply):
    mode: str
    backend: str
    worker_inprocess: str | None
    every: str
    cron_enabled: bool

    def data(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "backend": self.backend,
            "workerInprocess": self.worker_inprocess,
            "cronEvery": self.every,
            "cronEnabled": self.cron_enabled,
        }

    def view(self) -> list[Block]:
        return [
            Note(
                mark=Mark.INFO,
                text=f"worker mode: {self.mode} (backend {self.backend}, "
                f"WORKER_INPROCESS={self.worker_inprocess or 'unset'}); drain cron "
                f"{'on, every ' + self.every if self.cron_enabled else 'off'}",
            )
        ]


def cron_words(mode: str, every: str, drain_url_set: bool) -> str:
    """What the drain cron does in `mode`: "off", "on, every 5m", or why it stays off."""
    if mode != "cron":
        return "off"
    if drain_url_set:
        return f"on, every {every}"
    return f"stays off while DRAIN_URL is unset (then every {every})"


class ModePreview(Reply):
    current: str
    target: str
    backend: str
    changes: list[tuple[str, str, str]]
    ops_before: int
    ops_after: int
    every: str
    confirm_words: list[str]
    drain_url_set: bool = True
    instant: bool = False
    """In cron mode, instant drains too (DRAIN_INSTANT): `wake_month` of the idle cost."""
    wake_month: int = 0

    def view(self) -> list[Block]:
        blocks: list[Block] = [
            Note(
                mark=Mark.WARN,
                text=(
                    f"switch worker mode {self.current} → {self.target} through "
                    f"{self.backend}; idle Redis commands a month {self.ops_before:,} → "
                    f"{self.ops_after:,}"
                ),
            )
        ]
        if self.changes:
            blocks.append(
                Table(
                    columns=["variable", "now", "after"],
                    rows=[Row(cells=list(c)) for c in self.changes],
                )
            )
        else:
            blocks.append(
                Note(
                    mark=Mark.INFO, text=f"no variable of the app changes ({self.backend} backend)"
                )
            )
        items = [("drain cron", cron_words(self.target, self.every, self.drain_url_set))]
        if self.target == "cron" and self.drain_url_set:
            items.append(("instant drains", self._instant_line()))
        blocks.append(Fields(items=items))
        return blocks

    def _instant_line(self) -> str:
        if not self.instant:
            return f"off (DRAIN_INSTANT=0): a new job waits up to {self.every} for a tick"
        return (
            "on: a new job is drained within seconds, not at the next tick "
            f"({self.wake_month:,} of the commands a month: DRAIN_INSTANT=0 saves them)"
        )


class ModeChanged(Reply):
    mode: str
    every: str
    verified: bool
    backend: str
    drain_url_set: bool = True

    def data(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "cronEvery": self.every,
            "cronEnabled": self.mode == "cron" and self.drain_url_set,
            "verified": self.verified,
            "backend": self.backend,
            "drainUrlSet": self.drain_url_set,
        }

    def view(self) -> list[Block]:
        cron = "drain cron " + cron_words(self.mode, self.every, self.drain_url_set)
        check = "verified" if self.verified else "not verifiable with backend none"
        return [Note(mark=Mark.OK, text=f"worker mode is now {self.mode} ({check}); {cron}")]


def parser() -> WordParser:
    parser = WordParser("mode", USAGE)
    parser.add_argument(
        "target",
        metavar="MODE",
        nargs="?",
        choices=["cron", "always-on"],
        help="switch to cron or always-on (default: show the current mode)",
    )
    parser.add_argument(
        "--every",
        dest="every_ms",
        type=cadence_argument,
        metavar="DURATION",
        help="with cron: the drain cadence, 1s to 1d (e.g. 5m)",
    )
    # Set by the confirmation itself: the environment the preview showed.
    parser.add_argument("--expect-env", dest="expect_env", help=argparse.SUPPRESS)
    return parser


def parse(words: Sequence[str]) -> ModeRequest:
    return parse_words(ModeRequest, parser(), words)


def _monthly(mode: str, every_ms: int, queues: int, tick_cost: int, wake_cost: int = 0) -> int:
    """Idle Redis commands a month: the tick (and the instant drains' waits) in cron mode,
    the Workers' polling in always-on mode."""
    if mode == "cron":
        return math.ceil(MONTH_MS / every_ms) * (tick_cost + wake_cost)
    return queues * WORKER_IDLE_PER_MINUTE * MONTH_MS // 60_000


async def _backend(ctx: CommandContext) -> Backend:
    return backend_for(ctx.settings)


async def preview(req: ModeRequest, ctx: CommandContext) -> ModePreview:
    assert req.target is not None
    status = await ctx.cron_state().status()
    backend = await _backend(ctx)
    env = await backend.read()
    every = req.every_ms or status.every_ms
    queues = len(await ctx.queues.queue_names()) or 1
    cost = status.idle_tick_cost or 1
    instant = ctx.instant_drains

    def wake(every_ms: int) -> int:
        return status.wake_blocks(every_ms, ctx.settings.drain_wake_max_ms) if instant else 0

    changes = (
        diff(env, {"WORKER_INPROCESS": INPROCESS[req.target]}) if backend.name != "none" else []
    )
    words = [
        "mode",
        req.target,
        *(["--every", format_duration_ms(every)] if req.every_ms else []),
        "--expect-env",
        fingerprint(env),
    ]
    return ModePreview(
        current=status.mode,
        target=req.target,
        backend=backend.name,
        changes=changes,
        ops_before=_monthly(status.mode, status.every_ms, queues, cost, wake(status.every_ms)),
        ops_after=_monthly(req.target, every, queues, cost, wake(every)),
        every=format_duration_ms(every),
        confirm_words=words,
        drain_url_set=ctx.drain is not None,
        instant=instant,
        wake_month=math.ceil(MONTH_MS / every) * wake(every),
    )


async def run(req: ModeRequest, ctx: CommandContext) -> Reply:
    state = ctx.cron_state()
    backend = await _backend(ctx)
    if req.target is None:
        status = await state.status()
        env = await backend.read()
        return ModeReply(
            mode=status.mode,
            backend=backend.name,
            worker_inprocess=env.get("WORKER_INPROCESS"),
            every=format_duration_ms(status.every_ms),
            cron_enabled=status.enabled and ctx.drain is not None,
        )
    env = await backend.read()
    if req.expect_env and fingerprint(env) != req.expect_env:
        raise Refused(
            "the app's environment changed since the preview; nothing written. "
            f"Run `mode {req.target}` again to see the new preview"
        )
    if backend.name != "none":
        await backend.write(env, {"WORKER_INPROCESS": INPROCESS[req.target]})
    verified = False
    if backend.name != "none":
        verified = (await backend.read()).get("WORKER_INPROCESS") == INPROCESS[req.target]
        if not verified:
            raise OperationFailed(
                f"wrote WORKER_INPROCESS={INPROCESS[req.target]} through "
                f"{backend.name} but read back something else"
            )
    if req.every_ms:
        await state.set_every(req.every_ms)
    await state.set_mode(req.target)
    await state.set_paused(False)
    status = await state.status()
    return ModeChanged(
        mode=req.target,
        every=format_duration_ms(status.every_ms),
        verified=verified,
        backend=backend.name,
        drain_url_set=ctx.drain is not None,
    )


register(
    Command(
        name="mode",
        usage=USAGE,
        summary="show or switch worker mode: preview, confirm, apply, verify, move the cron",
        role=Role.ADMIN,
        parse=parse,
        run=run,
        confirm=lambda req: req.target is not None and not req.expect_env,
        preview=preview,
        confirm_in_terminal=True,
        examples=("mode", "mode cron --every 5m", "mode always-on"),
        parser=parser,
    )
)
