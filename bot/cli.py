"""`queueops <command>`: every /queue command from a terminal, as text or --json.

Exit 0 on success, 1 when the operation failed, 2 for a usage or configuration error;
errors are one line on stderr, never a traceback. `--help` (after any command, or alone)
and `--version` answer from the code alone: no configuration read, no Redis touched, no
server started.
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
from importlib.metadata import PackageNotFoundError, version

from bot.config import Settings, load_settings
from bot.dispatch import make_dispatcher
from bot.errors import ConfigError, UsageError
from bot.redis_client import make_redis
from bot.render_text import render_text
from bot.roles import Role
from bot.urls import hide_url_credentials
from commands.registry import Command, all_commands, resolve
from commands.reply import ErrorReply, Reply
from commands.runner import ConfirmationNeeded

HELP_FLAGS = ("-h", "--help")
USAGE = """usage: queueops COMMAND [ARGUMENTS] [--json] [--yes]
       queueops serve | queueops shell [--demo] | queueops --version
       queueops COMMAND --help

Every /queue command, run against the Redis at REDIS_URL; --json prints one JSON
document, --yes confirms what would otherwise ask. Exit 0 ok, 1 failed, 2 usage or
configuration.
"""
SERVE_USAGE = """usage: queueops serve

Run the Slack bot: POST /slack/events, /alerts/alertmanager, /alerts/generic, GET /healthz,
/readyz and /metrics on PORT (3000), with the drain cron and the incident watcher. Reads the
environment (REDIS_URL, SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET or SLACK_APP_TOKEN, DRAIN_URL,
DRAIN_EVERY, ...); stops cleanly on SIGTERM or Ctrl-C.
"""


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
    redis = make_redis(settings)  # one-shot: no name, no HELLO (bot/redis_client.py)
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
    if isinstance(reply, ErrorReply):
        # Last guard: an error may quote a URL from anywhere (a library's message).
        reply = reply.model_copy(update={"message": hide_url_credentials(reply.message)})
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


def package_version() -> str:
    try:
        return version("queueops")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def usage_of(words: Sequence[str]) -> tuple[str, int]:
    """(the usage to print for `queueops WORDS --help`, exit code); touches nothing."""
    if not words:
        rows = [f"  {c.usage:<58} {c.summary}" for c in all_commands()]
        return USAGE + "\ncommands:\n" + "\n".join(rows) + "\n", 0
    if words[0] == "serve":
        return SERVE_USAGE, 0
    family = [c for c in all_commands() if c.name.split()[0] == words[0].lower()]
    try:
        command, _ = resolve(words)
    except UsageError as err:
        if not family:
            return f"queueops: {err}\n", 2
        return "".join(_command_usage(c) for c in family), 0
    return _command_usage(command), 0


def _command_usage(command: Command) -> str:
    examples = "".join(f"  queueops {e}\n" for e in command.examples)
    return (
        f"usage: queueops {command.usage} [--json]\n\n{command.summary} "
        f"({command.role.label} role)\n" + (f"e.g.\n{examples}" if examples else "") + "\n"
    )


def _main(argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["shell"]:
        from bot.shell import main as shell_main  # its own argparse: --help, --demo, -e

        return shell_main(args[1:])
    if args[:1] in (["--version"], ["-V"]):
        print(f"queueops {package_version()}")
        return 0
    as_json = "--json" in args
    assume_yes = "--yes" in args
    words = [a for a in args if a not in ("--json", "--yes")]
    if not words or any(a in HELP_FLAGS for a in words):
        text, code = usage_of([a for a in words if a not in HELP_FLAGS])
        print(text, end="", file=sys.stdout if code == 0 else sys.stderr)
        return code
    if words[0] == "serve" and len(words) > 1:
        return emit(
            ErrorReply(
                message=f"serve takes no arguments (got {' '.join(words[1:])!r})", exit_code=2
            ),
            as_json=as_json,
        )
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
