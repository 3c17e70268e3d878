"""`queueops <command>`: every /queue command from a terminal, as text or --json.

Exit 0 on success, 1 when the operation failed, 2 for a usage or configuration error;
errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
import traceback
from collections.abc import Sequence
from contextlib import suppress

from bot.config import Settings, load_settings
from bot.dispatch import make_dispatcher
from bot.errors import ConfigError
from bot.redis_client import make_redis
from bot.render_text import render_text
from bot.roles import Role
from commands.reply import ErrorReply, Reply


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


async def run_words(words: Sequence[str], settings: Settings) -> Reply:
    """Run one command against the configured Redis and close the connection after.

    The terminal is trusted (it holds the Redis credentials): admin role, no rate limit,
    no confirmation for chat-confirmed commands; the audit trail records it all the same.
    """
    redis = make_redis(settings, client_name="queueops-cli")
    try:
        dispatcher = make_dispatcher(redis, settings, rate_limited=False)
        outcome = await dispatcher.run(words, actor=_actor(), role=Role.ADMIN, transport="cli")
        return outcome.reply
    finally:
        await redis.aclose()


def emit(reply: Reply, *, as_json: bool) -> int:
    """Print a reply the CLI way and return its exit code."""
    if as_json:
        print(json.dumps(reply.data(), ensure_ascii=False))
    if isinstance(reply, ErrorReply):
        print(f"queueops: {reply.message}", file=sys.stderr)
        return reply.exit_code
    if not as_json:
        print(render_text(reply.view()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `queueops snapshot | head`: the reader left; so do we, quietly
        with suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    words = [a for a in args if a != "--json"]
    if not words or words[0] in ("-h", "--help"):
        words = ["help"]
    if words[0] == "shell":
        from bot.shell import main as shell_main

        return shell_main(args[args.index("shell") + 1 :])
    try:
        settings = load_settings()
    except ConfigError as err:
        return emit(ErrorReply(message=f"configuration: {err}", exit_code=2), as_json=as_json)
    if words[0] == "serve":
        from bot.http_app import serve

        return serve(settings)
    try:
        reply = asyncio.run(run_words(words, settings))
    except KeyboardInterrupt:
        return emit(ErrorReply(message="interrupted", exit_code=1), as_json=as_json)
    except Exception as err:  # a bug: still one line, the traceback only on request
        if os.environ.get("QUEUEOPS_DEBUG"):
            traceback.print_exc()
        first = str(err).splitlines()[0] if str(err) else ""
        reply = ErrorReply(
            message=f"internal error ({type(err).__name__}: {first}); "
            "set QUEUEOPS_DEBUG=1 for the traceback"
        )
    return emit(reply, as_json=as_json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
