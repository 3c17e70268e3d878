"""Run a command from its words: resolve, check the role, parse, run, and turn every
failure into an ErrorReply with its exit code. The one path all transports share."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.errors import QueueOpsError
from commands.context import CommandContext
from commands.registry import resolve
from commands.reply import ErrorReply, Reply

log = logging.getLogger(__name__)


async def execute(words: Sequence[str], ctx: CommandContext) -> Reply:
    try:
        command, rest = resolve(words)
        if command.role > ctx.role:
            return ErrorReply(
                message=(
                    f"'{command.name}' needs the {command.role.label} role; {ctx.actor} has "
                    f"{ctx.role.label} (granted by QUEUEOPS_ROLES)"
                ),
                exit_code=1,
            )
        request = command.parse(rest)
        return await command.run(request, ctx)
    except QueueOpsError as err:
        return ErrorReply(message=str(err), exit_code=err.exit_code)
    except (RedisConnectionError, RedisTimeoutError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return ErrorReply(
            message=f"Redis unreachable at {ctx.settings.redis_location()} (REDIS_URL): {reason}"
        )
    except ResponseError as err:
        return ErrorReply(
            message=f"Redis at {ctx.settings.redis_location()} refused the command: {err}"
        )
    except RedisError as err:
        return ErrorReply(
            message=f"Redis at {ctx.settings.redis_location()} answered unexpectedly "
            f"(is it a Redis server?): {err}"
        )
