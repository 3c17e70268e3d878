"""`rotate-token`: the drain token, rotated through the mode backend.

1. new token as DRAIN_QUEUES_TOKEN, the old one kept as CRON_TOKEN (the app accepts both);
2. wait until the app accepts the new token (a harmless drain call: an idle queue, at most
   one job), while the bot itself keeps draining with the old one;
3. switch the bot's own token (kept in queueops' Redis state, so every replica and the CLI
   switch together);
4. remove CRON_TOKEN.
If the app never accepts the new token, the variables are put back as they were and the bot
keeps the old token: there is never a moment at which the bot's cron is rejected.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AfterValidator

from bot.deploy.base import apply_changes
from bot.deploy.select import backend_for
from bot.drain import DrainError
from bot.durations import format_duration_ms
from bot.errors import OperationFailed, Refused
from bot.roles import Role
from commands.context import CommandContext
from commands.parsing import Request, WordParser, duration_argument, parse_words
from commands.registry import Command, register
from commands.reply import Reply
from commands.view import Block, Mark, Note, Row, Table

USAGE = "rotate-token [--wait 10m]"


def _wait(ms: int) -> int:
    """1s to 1h, said in durations (not "less than or equal to 3600000")."""
    if not 1000 <= ms <= 3_600_000:
        raise ValueError(f"{format_duration_ms(ms)} is not within 1s and 1h")
    return ms


class RotateRequest(Request):
    wait_ms: Annotated[int, AfterValidator(_wait)] = 600_000


class RotatePreview(Reply):
    backend: str
    wait: str

    def view(self) -> list[Block]:
        return [
            Note(
                mark=Mark.WARN,
                text=f"rotate the drain token through {self.backend}; "
                f"waits up to {self.wait} for the app to accept the new one",
            ),
            Table(
                columns=["step", "what"],
                rows=[
                    Row(cells=list(r))
                    for r in (
                        ("1", "DRAIN_QUEUES_TOKEN = a new 64-hex token; CRON_TOKEN = the old one"),
                        ("2", "wait until the app accepts the new token (harmless drain call)"),
                        ("3", "the bot switches to the new token"),
                        ("4", "CRON_TOKEN removed"),
                    )
                ],
            ),
        ]


class RotateReply(Reply):
    rotated: bool
    waited_ms: int
    backend: str

    def data(self) -> dict[str, Any]:
        return {"rotated": self.rotated, "waitedMs": self.waited_ms, "backend": self.backend}

    def view(self) -> list[Block]:
        return [
            Note(
                mark=Mark.OK,
                text=f"drain token rotated through {self.backend}: the app "
                f"took the new one after {self.waited_ms // 1000} s; the old one is gone",
            )
        ]


def parser() -> WordParser:
    parser = WordParser("rotate-token", USAGE)
    parser.add_argument(
        "--wait",
        dest="wait_ms",
        type=duration_argument,
        metavar="DURATION",
        help="how long to wait for the app to accept the new token, 1s to 1h (default 10m)",
    )
    return parser


def parse(words: Sequence[str]) -> RotateRequest:
    return parse_words(RotateRequest, parser(), words)


async def preview(req: RotateRequest, ctx: CommandContext) -> RotatePreview:
    return RotatePreview(backend=_backend_name(ctx), wait=format_duration_ms(req.wait_ms))


def _backend_name(ctx: CommandContext) -> str:
    if ctx.settings.worker_mode_backend == "none":
        raise Refused(
            "rotate-token changes the app's variables: set WORKER_MODE_BACKEND to "
            "apprunner or dotenv"
        )
    if ctx.drain is None:
        raise Refused("rotate-token needs DRAIN_URL, to check the app accepts the new token")
    return ctx.settings.worker_mode_backend


async def _idle_queue(ctx: CommandContext) -> str | None:
    probe = await ctx.queues.probe()
    idle = [q.name for q in probe.queues if not q.runnable]
    return idle[0] if idle else None


async def run(req: RotateRequest, ctx: CommandContext) -> RotateReply:
    _backend_name(ctx)
    assert ctx.drain is not None
    backend = backend_for(ctx.settings)
    env = await backend.read()
    old = env.get("DRAIN_QUEUES_TOKEN") or await ctx.drain.current_token()
    if not old:
        raise OperationFailed("no current drain token to rotate from")
    new = secrets.token_hex(32)
    step1: dict[str, str | None] = {"DRAIN_QUEUES_TOKEN": new, "CRON_TOKEN": old}
    await backend.write(env, step1)
    after_step1 = apply_changes(env, step1)
    started = time.monotonic()
    queue = await _idle_queue(ctx)
    delay = 1.0
    while True:
        try:
            await ctx.drain.drain(queue, max_duration_ms=1000, max_jobs=1, token=new)
            break
        except DrainError as err:
            if err.status not in (401, None) or time.monotonic() - started > req.wait_ms / 1000:
                # Put the variables back; the bot never stopped using the old token.
                restore: dict[str, str | None] = {
                    "DRAIN_QUEUES_TOKEN": env.get("DRAIN_QUEUES_TOKEN"),
                    "CRON_TOKEN": env.get("CRON_TOKEN"),
                }
                await backend.write(after_step1, restore)
                raise OperationFailed(
                    f"the app did not accept the new token ({err}); rolled back: the "
                    "variables are as before and the bot keeps the old token"
                ) from None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 15.0)
    waited = int((time.monotonic() - started) * 1000)
    await ctx.queues.redis.set(f"{ctx.settings.state_prefix}:drain-token", new)
    await backend.write(after_step1, {"CRON_TOKEN": None})
    return RotateReply(rotated=True, waited_ms=waited, backend=backend.name)


register(
    Command(
        name="rotate-token",
        usage=USAGE,
        summary="rotate the drain token, with no moment at which the app rejects the bot",
        role=Role.ADMIN,
        parse=parse,
        run=run,
        confirm=lambda req: True,
        preview=preview,
        confirm_in_terminal=True,
        examples=("rotate-token",),
        parser=parser,
    )
)
