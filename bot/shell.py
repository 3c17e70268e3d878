"""`queueops shell`: the whole bot in a terminal, no Slack workspace needed.

Like Hubot's shell adapter and errbot's text backend: type `/queue snapshot` (or just
`snapshot`), read the reply as the bot renders it; `help`, history (readline), `exit`;
`!as U123` acts as another Slack user so QUEUEOPS_ROLES can be tried locally (errbot's
!asuser); `-e "/queue snapshot"` runs one line and exits (Hubot's -e).

Redis: REDIS_URL when set; else the one on localhost:6379 if it answers; else an embedded
one (bot/embedded_redis.py). `--demo` always starts an embedded one and fills it with a
realistic bad night (bot/demo.py), so it never writes into a Redis you care about; it
also runs an app of its own to drain and reconfigure (bot/demo_drain.py, a temporary .env),
stopped and removed on every way out like the embedded Redis.

Like any shell: Ctrl-C cancels the line being typed or the command running (a hint at an
empty prompt), Ctrl-D or `exit` leaves. Every wait is bounded (the demo fill, closing the
Redis client), and the embedded Redis stops on every way out: exit, an error, SIGTERM,
SIGHUP (the terminal closing), which are turned into a normal exit for that reason.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from bot.config import Settings, load_settings
from bot.demo import fill_demo
from bot.embedded_redis import answers_ping, embedded_redis
from bot.environments import Environments
from bot.errors import OperationFailed, QueueOpsError
from bot.redis_client import make_redis
from bot.render_text import render_text
from bot.roles import Role
from bot.urls import hide_url_credentials
from commands.parsing import split_line
from commands.reply import ErrorReply, Reply
from commands.runner import ConfirmationNeeded

HISTORY = Path.home() / ".queueops_shell_history"
LOCAL_USER = "shell"
GREETING = (
    "queueops shell: type /queue help (or just help); !as U123 to act as a Slack user; "
    "exit to leave"
)
CTRL_C_HINT = "-- Ctrl-C cancels the line; type exit (or press Ctrl-D) to leave"
DEMO_FILL_TIMEOUT_S = 120.0
CANCEL_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 5.0


class Stopped(SystemExit):
    """SIGTERM or SIGHUP arrived: unwind like an exit, so every `finally` (the embedded
    Redis's above all) runs; the code is the shell convention, 128 + the signal."""


def _stop_on(signum: int, frame: FrameType | None) -> None:
    # Unwinding must not be cut short by a second signal (a supervisor repeating SIGTERM);
    # SIGKILL still works, and then Linux stops the embedded Redis (PR_SET_PDEATHSIG).
    for each in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(each, signal.SIG_IGN)
    raise Stopped(128 + signum)


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
    """(settings with the Redis to use, what it is). Errors about a Redis that REDIS_URL did
    not give name where it came from instead."""
    if not demo and ("REDIS_URL" in os.environ or settings.redis_urls):
        # Several environments (QUEUEOPS_REDIS_URLS): those, never a guessed one.
        shown = settings.for_env(settings.default_env).redis_location()
        if len(settings.environments) > 1:
            shown = f"{shown} ({settings.default_env}; also {', '.join(settings.environments[1:])})"
        yield settings, shown
        return
    if not demo and answers_ping("localhost", 6379):
        local = settings.with_redis(settings.redis_url, origin="local, REDIS_URL is not set")
        yield local, local.redis_location()
        return
    with embedded_redis() as (url, what):
        embedded = settings.with_redis(url, origin="the embedded Redis")
        if not demo:
            yield embedded, f"embedded ({what})"
            return
        from bot.demo import demo_app  # its own app: drain endpoint and .env, stopped after

        with demo_app(embedded) as with_app:
            yield with_app, f"embedded ({what})"


@dataclass(frozen=True)
class Asked:
    """A command that wants a person to confirm, and how its answer is to be printed."""

    pending: ConfirmationNeeded
    as_json: bool = False
    env: str | None = None
    """The environment `--env` named, where the confirmed command runs too."""


class Shell:
    def __init__(self, settings: Settings, *, user: str | None, assume_yes: bool) -> None:
        self.settings = settings
        self.user = user
        self.assume_yes = assume_yes
        self.envs = Environments(settings, client_name="queueops-shell", rate_limited=False)
        """Each environment is connected on the first line run in it (a cluster is told
        from the server, bot/redis_client)."""

    def role_in(self, env: str | None) -> Role:
        """The role in an environment (QUEUEOPS_ROLES grants may be scoped `admin@prod=`)."""
        if self.user is None:
            return Role.ADMIN
        return self.settings.roles.role_of({self.user}, env or self.envs.default)

    async def _role_in(self, env: str) -> Role:
        """`role_in` as Environments.run asks for it."""
        return self.role_in(env)

    @property
    def actor(self) -> str:
        return f"shell:{self.user or LOCAL_USER}"

    @property
    def role(self) -> Role:
        """The local user is trusted like the CLI; `!as U123` gets what QUEUEOPS_ROLES grants
        that id (user groups need Slack, so only user ids and * count here)."""
        return self.role_in(None)

    @property
    def role_said(self) -> str:
        """The role and where it came from: "viewer (default: QUEUEOPS_ROLES unset)"."""
        if self.user is None:
            return f"{self.role.label} (the local user, trusted like the CLI)"
        said = f"{self.role.label} ({self.settings.roles.origin({self.user}, self.envs.default)})"
        if self.envs.several:
            said += f" in {self.envs.default}; " + ", ".join(
                f"{self.role_in(e).label} in {e}" for e in self.envs.names[1:]
            )
        return said

    def _shell_command(self, text: str) -> int:
        """The shell's own `!` commands: `!as USER`, `!as me` (back to the local user), and
        bare `!as` (who am I)."""
        name, _, who = text.partition(" ")
        if name != "!as":
            print(f"error: unknown shell command '{name}'; try !as USER, !as me or !as")
            return 2
        who = who.strip()
        if not who:
            print(f"-- you are {self.actor}, role {self.role_said}")
            return 0
        if len(who.split()) > 1:
            print(f"error: !as takes one Slack user id (got {who!r})")
            return 2
        self.user = None if who == "me" else who
        print(f"-- now acting as {self.actor}, role {self.role_said}")
        return 0

    async def handle(self, line: str) -> int | Asked:
        """Run one line: its exit code (0 ok, 1 failed, 2 usage), or the preview of a
        command that wants a person to confirm (asked outside the event loop, see `run_line`).
        `--json` prints the reply as the CLI's `--json` does; `--yes` runs without asking."""
        text = line.strip()
        if text.startswith("!"):
            return self._shell_command(text)
        if text == "/queue" or text.startswith("/queue "):
            text = text[len("/queue") :].strip()
        try:
            words = split_line(text) or ["help"]
        except QueueOpsError as err:
            print(f"error: {err}")
            return err.exit_code
        as_json, yes = "--json" in words, "--yes" in words
        words = [w for w in words if w not in ("--json", "--yes")] or ["help"]
        try:
            env, words = self.envs.pick(words)
        except QueueOpsError as err:
            return self._show(ErrorReply(message=str(err), exit_code=2), as_json=as_json)
        words = words or ["help"]
        outcome = await self.envs.run(
            env,
            words,
            role_in=self._role_in,
            actor=self.actor,
            transport="shell",
            confirmed=yes,
        )
        if isinstance(outcome.reply, ConfirmationNeeded):
            return Asked(outcome.reply, as_json=as_json, env=env)
        return self._show(outcome.reply, as_json=as_json)

    async def confirmed(
        self, pending: ConfirmationNeeded, *, as_json: bool = False, env: str | None = None
    ) -> int:
        outcome = await self.envs.run(
            env,
            pending.words,
            role_in=self._role_in,
            actor=self.actor,
            transport="shell",
            confirmed=True,
        )
        return self._show(outcome.reply, as_json=as_json)

    @staticmethod
    def _show(reply: Reply, *, as_json: bool = False) -> int:
        if isinstance(reply, ErrorReply):
            reply = reply.model_copy(update={"message": hide_url_credentials(reply.message)})
        if as_json:
            print(json.dumps(reply.data(), ensure_ascii=False))
        else:
            print(render_text(reply.view()))
        return int(getattr(reply, "exit_code", 0)) if not reply.ok else 0

    def run_line(self, runner: asyncio.Runner, line: str, *, ask: bool) -> int:
        """Run a line to the end; Ctrl-C cancels it (asyncio.Runner turns SIGINT into the
        cancellation of what runs) and the shell goes on."""
        try:
            result = runner.run(self.handle(line))
            if isinstance(result, int):
                return result
            pending = result.pending
            if self.assume_yes:
                return runner.run(self.confirmed(pending, as_json=result.as_json, env=result.env))
            if not ask:
                # No terminal to ask on: a prompt would read the next line as its answer.
                return self._show(
                    ErrorReply(
                        message="not run: nothing is asked when stdin is not a terminal; "
                        f"to run it, add --yes: {pending.command}"
                        + (f" --env {result.env}" if result.env else "")
                        + " --yes"
                    ),
                    as_json=result.as_json,
                )
            print(render_text(pending.preview.view()))
            if not self._confirm(pending.command):
                print("-- not confirmed; nothing changed")
                return 1
            return runner.run(self.confirmed(pending, as_json=result.as_json, env=result.env))
        except KeyboardInterrupt:
            print("\n-- cancelled")
            return 130

    @staticmethod
    def _confirm(command: str) -> bool:
        """Asked with no command running, so Ctrl-C here is a plain no."""
        try:
            print(f"-- to run: {command}")
            answer = input("run it? [y/N] ")
        except (EOFError, KeyboardInterrupt):
            print()
            return False
        return answer.strip().lower() in ("y", "yes")

    async def close(self) -> None:
        with suppress(TimeoutError, OSError):
            await asyncio.wait_for(self.envs.aclose(), CLOSE_TIMEOUT_S)


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
    previous = {each: signal.signal(each, _stop_on) for each in (signal.SIGTERM, signal.SIGHUP)}
    try:
        settings = load_settings()
        with _redis_for(settings, demo=args.demo) as (settings, where):
            return _run(settings, where, args)
    except QueueOpsError as err:
        print(f"queueops: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("\nqueueops: interrupted", file=sys.stderr)
        return 130
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)


def fill_demo_bounded(settings: Settings) -> list[str]:
    """Fill the demo queues in a thread of its own, with its own loop and client, waited for
    at most DEMO_FILL_TIMEOUT_S. A fill that hangs (a worker that never closes) is left
    behind in its daemon thread and dies with the process; the shell is never stuck."""
    result: list[list[str]] = []
    failure: list[BaseException] = []

    async def fill() -> list[str]:
        redis = make_redis(settings, client_name="queueops-demo")
        try:
            return await fill_demo(redis, settings)
        finally:
            await redis.aclose()

    def work() -> None:
        try:
            result.append(asyncio.run(fill()))
        except BaseException as err:  # handed to the waiting thread, which reports it
            failure.append(err)

    thread = threading.Thread(target=work, name="queueops-demo-fill", daemon=True)
    thread.start()
    thread.join(DEMO_FILL_TIMEOUT_S)
    if thread.is_alive():
        raise OperationFailed(f"the demo fill did not finish within {DEMO_FILL_TIMEOUT_S:.0f} s")
    if failure:
        raise OperationFailed(f"the demo fill failed: {failure[0]}")
    return result[0]


def _run(settings: Settings, where: str, args: argparse.Namespace) -> int:
    interactive = args.execute is None
    if interactive or args.demo:
        print(f"-- Redis: {where}")
    if args.demo:
        print(f"-- demo: filled {', '.join(fill_demo_bounded(settings))}")
        print(
            f"-- demo app: drain endpoint {settings.drain_url}, "
            f"its .env {settings.worker_mode_dotenv} (both gone on exit)"
        )
    shell = Shell(settings, user=args.user, assume_yes=args.yes)
    with asyncio.Runner() as runner:
        try:
            if not interactive:
                return shell.run_line(runner, args.execute, ask=sys.stdin.isatty())
            print(GREETING)
            if sys.stdin.isatty():
                _setup_history()
            while True:
                # A Ctrl-C anywhere here (typing, or just after Enter, before the command
                # starts) drops the line; once it runs, run_line cancels it instead.
                try:
                    line = input("queueops> ")
                    if line.strip() in ("exit", "quit", "/exit"):
                        return 0
                    if line.strip():
                        shell.run_line(runner, line, ask=sys.stdin.isatty())
                except EOFError:
                    print()
                    return 0
                except KeyboardInterrupt:
                    # readline has already thrown the typed text away, so an empty prompt
                    # and a half-typed line look alike: the hint costs one line either way.
                    print(f"\n{CTRL_C_HINT}")
        finally:
            with suppress(Exception):
                runner.run(shell.close())
