"""Run a command from its words: resolve, check the role, parse, confirm, run, and turn
every failure into an ErrorReply with its exit code. The one path all transports share."""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from pydantic import SerializeAsAny
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.errors import QueueOpsError, RedisQuotaExhausted
from commands.context import CommandContext
from commands.registry import Command, resolve
from commands.reply import ErrorReply, Reply
from commands.view import Block, Mark, Note

log = logging.getLogger(__name__)

Gate = Callable[[Command, CommandContext], Awaitable[None]]
"""Called once the command and role are known, before it runs; raises QueueOpsError to
stop it (the Slack transport's per-user rate limit)."""


class ConfirmationNeeded(Reply):
    """The command would act on many jobs: here is what it would do; ask a person first."""

    ok: bool = True
    command: str
    words: list[str]
    preview: SerializeAsAny[Reply]

    def view(self) -> list[Block]:
        return [
            *self.preview.view(),
            Note(mark=Mark.WARN, text=f"Nothing has changed yet. Confirm to run: {self.command}"),
        ]


@dataclass(frozen=True)
class Outcome:
    """What a run produced, for the transport (reply), metrics and audit (the rest)."""

    command: str | None
    reply: Reply
    seconds: float
    redis_error: bool = False

    @property
    def label(self) -> str:
        if isinstance(self.reply, ConfirmationNeeded):
            return "confirm"
        return "ok" if self.reply.ok else "error"


async def execute(
    words: Sequence[str],
    ctx: CommandContext,
    *,
    confirmed: bool = True,
    gate: Gate | None = None,
    terminal: bool = False,
) -> Outcome:
    """Run `words`. With `confirmed=False`, a command that wants confirmation returns a
    ConfirmationNeeded preview instead of acting."""
    started = time.perf_counter()
    command: Command | None = None

    def done(reply: Reply, *, redis_error: bool = False) -> Outcome:
        return Outcome(
            command=command.name if command else None,
            reply=reply,
            seconds=time.perf_counter() - started,
            redis_error=redis_error,
        )

    try:
        if any(w in ("-h", "--help") for w in words):
            # Help is for everyone and changes nothing: before the role, the gate, Redis.
            from commands.help import help_for

            command, _ = resolve(["help"])  # counted, audited and shown (privately) as help
            return done(help_for([w for w in words if w not in ("-h", "--help")] or ["help"]))
        command, rest = resolve(words)
        if command.role > ctx.role:
            return done(
                ErrorReply(
                    message=(
                        f"'{command.name}' needs the {command.role.label} role; {ctx.actor} "
                        f"has {ctx.role.label} ({ctx.settings.roles.origin()})"
                    )
                )
            )
        if gate is not None:
            await gate(command, ctx)
        request = command.parse(rest)
        asks = not terminal or command.confirm_in_terminal
        if not confirmed and asks and command.preview is not None and command.confirm(request):
            preview = await command.preview(request, ctx)
            if preview.nothing_to_do:
                return done(preview)  # nothing matches: said as it is, nothing to confirm
            # A preview may pin what it saw (mode: the environment's fingerprint), so the
            # confirmed run refuses if the world changed in between.
            confirm_words = getattr(preview, "confirm_words", None) or list(words)
            return done(
                ConfirmationNeeded(command=shlex.join(words), words=confirm_words, preview=preview)
            )
        return done(await command.run(request, ctx))
    except QueueOpsError as err:
        if RedisQuotaExhausted.matches(err) and not isinstance(err, RedisQuotaExhausted):
            # A module that wrapped Redis's answer (a bulk move's "stopped: ...").
            return done(_quota_exhausted(ctx, err), redis_error=True)
        return done(ErrorReply(message=str(err), exit_code=err.exit_code))
    except OSError as err:
        if err.filename is not None:
            # A file (WORKER_MODE_DOTENV), not Redis: name the file, not the server.
            return done(ErrorReply(message=f"cannot use {err.filename}: {err.strerror or err}"))
        return done(_redis_unreachable(ctx, err), redis_error=True)
    except (RedisConnectionError, RedisTimeoutError) as err:
        if RedisQuotaExhausted.matches(err):
            return done(_quota_exhausted(ctx, err), redis_error=True)
        return done(_redis_unreachable(ctx, err), redis_error=True)
    except ResponseError as err:
        if RedisQuotaExhausted.matches(err):
            return done(_quota_exhausted(ctx, err), redis_error=True)
        location = ctx.settings.redis_location()
        return done(
            ErrorReply(message=f"Redis at {location} refused the command: {err}"),
            redis_error=True,
        )
    except RedisError as err:
        return done(
            ErrorReply(
                message=f"Redis at {ctx.settings.redis_location()} answered unexpectedly "
                f"(is it a Redis server?): {err}"
            ),
            redis_error=True,
        )


def _quota_exhausted(ctx: CommandContext, err: Exception) -> ErrorReply:
    """Upstash's `ERR max requests limit exceeded`: the cause and the fix, in one line."""
    quota = RedisQuotaExhausted.for_location(ctx.settings.redis_location(), err)
    return ErrorReply(message=str(quota), exit_code=quota.exit_code)


def _redis_unreachable(ctx: CommandContext, err: Exception) -> ErrorReply:
    """One line naming host:port and where that Redis came from (REDIS_URL, embedded...)."""
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    where = f"{ctx.settings.redis_location()} ({ctx.settings.redis_origin()})"
    return ErrorReply(message=f"Redis unreachable at {where}: {reason}")
