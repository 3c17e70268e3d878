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
from commands.runner import ConfirmationNeeded


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


async def run_words(
    words: Sequence[str], settings: Settings, *, assume_yes: bool = False, as_json: bool = False
) -> Reply:
    """Run one command against the configured Redis and close the connection after.

    The terminal is trusted (it holds the Redis credentials): admin role, no rate limit, and
    no question for what chat confirms (bulk quarantine, replay). A command that changes a
    deployment (`mode`) previews and asks; `--yes` skips the question; with no terminal and
    no `--yes` it changes nothing and says so (DESIGN.md, the CLI's manners).
    """
    redis = make_redis(settings, client_name="queueops-cli")
    try:
        dispatcher = make_dispatcher(redis, settings, rate_limited=False)

        async def run(command_words: Sequence[str], confirmed: bool) -> Reply:
            outcome = await dispatcher.run(
                command_words,
                actor=_actor(),
                role=Role.ADMIN,
                transport="cli",
                confirmed=confirmed,
                terminal=True,
            )
            return outcome.reply

        reply = await run(words, assume_yes)
        if not isinstance(reply, ConfirmationNeeded):
            return reply
        if not sys.stdin.isatty() or as_json:
            if not as_json:
                print(render_text(reply.preview.view()))
            return ErrorReply(
                message="not confirmed (no terminal): nothing changed; rerun with --yes to apply"
            )
        print(render_text(reply.preview.view()))
        answer = await asyncio.to_thread(input, f"apply `{reply.command}`? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return ErrorReply(message="not confirmed: nothing changed")
        return await run(reply.words, True)
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
    assume_yes = "--yes" in args
    words = [a for a in args if a not in ("--json", "--yes")]
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
        reply = asyncio.run(run_words(words, settings, assume_yes=assume_yes, as_json=as_json))
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
