"""`queueops shell`: the whole bot in a terminal, no Slack workspace needed.

Like Hubot's shell adapter and errbot's text backend: type `/queue snapshot` (or just
`snapshot`), read the reply as the bot renders it; `help`, history (readline), `exit`;
`!as U123` acts as another Slack user so QUEUEOPS_ROLES can be tried locally (errbot's
!asuser); `-e "/queue snapshot"` runs one line and exits (Hubot's -e).

Redis: REDIS_URL when set; else the one on localhost:6379 if it answers; else an embedded
one (bot/embedded_redis.py). `--demo` always starts an embedded one and fills it with a
realistic bad night (bot/demo.py), so it never writes into a Redis you care about.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from bot.config import Settings, load_settings
from bot.demo import fill_demo
from bot.dispatch import make_dispatcher
from bot.embedded_redis import answers_ping, embedded_redis
from bot.errors import QueueOpsError
from bot.redis_client import make_redis
from bot.render_text import render_text
from bot.roles import Role
from commands.parsing import split_line
from commands.runner import ConfirmationNeeded

HISTORY = Path.home() / ".queueops_shell_history"
LOCAL_USER = "shell"
GREETING = (
    "queueops shell: type /queue help (or just help); !as U123 to act as a Slack user; "
    "exit to leave"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="queueops shell", description="the bot in a terminal: a local chat backend"
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start an embedded Redis filled with a realistic backlog",
    )
    parser.add_argument(
        "--as",
        dest="user",
        metavar="USER",
        help="act as this Slack user id (roles from QUEUEOPS_ROLES)",
    )
    parser.add_argument("-e", "--execute", metavar="LINE", help="run one line and exit")
    parser.add_argument(
        "--yes", action="store_true", help="with -e: confirm what would otherwise ask"
    )
    return parser


@contextmanager
def _redis_for(settings: Settings, *, demo: bool) -> Iterator[tuple[Settings, str]]:
    """(settings with the Redis to use, what it is)."""
    if not demo and ("REDIS_URL" in os.environ or answers_ping("localhost", 6379)):
        yield settings, settings.redis_location()
        return
    with embedded_redis() as (url, what):
        yield settings.model_copy(update={"redis_url": url}), f"embedded ({what})"


class Shell:
    def __init__(self, settings: Settings, *, user: str | None, assume_yes: bool) -> None:
        self.settings = settings
        self.user = user
        self.assume_yes = assume_yes
        self.redis = make_redis(settings, client_name="queueops-shell")
        self.dispatcher = make_dispatcher(self.redis, settings, rate_limited=False)

    @property
    def actor(self) -> str:
        return f"shell:{self.user or LOCAL_USER}"

    @property
    def role(self) -> Role:
        """The local user is trusted like the CLI; `!as U123` gets what QUEUEOPS_ROLES grants
        that id (user groups need Slack, so only user ids and * count here)."""
        return Role.ADMIN if self.user is None else self.settings.roles.role_of({self.user})

    async def handle(self, line: str, ask: bool) -> int:
        """Run one line; returns its exit code (0 ok, 1 failed, 2 usage)."""
        text = line.strip()
        if text.startswith("!as"):
            who = text[3:].strip()
            self.user = None if who in ("", "me") else who
            print(f"-- now acting as {self.actor} ({self.role.label})")
            return 0
        if text == "/queue" or text.startswith("/queue "):
            text = text[len("/queue") :].strip()
        try:
            words = split_line(text) or ["help"]
        except QueueOpsError as err:
            print(f"error: {err}")
            return err.exit_code
        outcome = await self.dispatcher.run(
            words, actor=self.actor, role=self.role, transport="shell", confirmed=False
        )
        reply = outcome.reply
        if isinstance(reply, ConfirmationNeeded):
            print(render_text(reply.preview.view()))
            if not self.assume_yes and not (ask and self._confirm(reply.command)):
                print("-- not confirmed; nothing changed")
                return 1
            outcome = await self.dispatcher.run(
                reply.words, actor=self.actor, role=self.role, transport="shell", confirmed=True
            )
            reply = outcome.reply
        print(render_text(reply.view()))
        return int(getattr(reply, "exit_code", 0)) if not reply.ok else 0

    @staticmethod
    def _confirm(command: str) -> bool:
        try:
            answer = input(f"run `{command}`? [y/N] ")
        except EOFError:
            return False
        return answer.strip().lower() in ("y", "yes")

    async def close(self) -> None:
        await self.redis.aclose()


def _setup_history() -> None:
    with suppress(ImportError, OSError):
        import readline

        with suppress(FileNotFoundError):
            readline.read_history_file(HISTORY)
        readline.set_history_length(1000)
        import atexit

        atexit.register(readline.write_history_file, HISTORY)


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        settings = load_settings()
        with _redis_for(settings, demo=args.demo) as (settings, where):
            return _run(settings, where, args)
    except QueueOpsError as err:
        print(f"queueops: {err}", file=sys.stderr)
        return err.exit_code


def _run(settings: Settings, where: str, args: argparse.Namespace) -> int:
    loop = asyncio.new_event_loop()
    shell = Shell(settings, user=args.user, assume_yes=args.yes)
    try:
        interactive = args.execute is None
        if interactive or args.demo:
            print(f"-- Redis: {where}")
        if args.demo:
            queues = loop.run_until_complete(
                fill_demo(shell.redis, settings.redis_url, settings.prefix)
            )
            print(f"-- demo: filled {', '.join(queues)}")
        if not interactive:
            return loop.run_until_complete(shell.handle(args.execute, ask=sys.stdin.isatty()))
        print(GREETING)
        if sys.stdin.isatty():
            _setup_history()
        while True:
            try:
                line = input("queueops> ")
            except EOFError:
                print()
                return 0
            except KeyboardInterrupt:
                print()
                continue
            if line.strip() in ("exit", "quit", "/exit"):
                return 0
            if line.strip():
                loop.run_until_complete(shell.handle(line, ask=True))
    finally:
        loop.run_until_complete(shell.close())
        loop.close()
