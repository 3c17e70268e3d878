"""`queueops <command>`: every /queue command from a terminal, as text or --json.

Exit 0 on success, 1 when the operation failed, 2 for a usage or configuration error;
errors are one line on stderr, never a traceback. `--help` (after any command, or alone)
and `--version` answer from the code alone: no configuration read, no Redis touched, no
server started.

A CLI is typed many times, so it imports only what the command needs: `--help` and
`--version` nothing beyond this module; a command its own family (commands/registry.py's
FAMILIES) and what that uses. Keep imports here inside the functions that need them.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bot.config import Settings
    from commands.reply import Reply

HELP_FLAGS = ("-h", "--help")

# What `queueops --help` lists: every command of the registry, in its order, one line each
# (static, so that the help imports no command; tests/test_cli.py checks that it is exactly
# the registry's list). Each command's arguments: `queueops COMMAND --help`.
COMMAND_LINES: tuple[tuple[str, str], ...] = (
    ("snapshot", "per queue: counts, oldest waiting job, top names, failures, DLQ depth"),
    ("quarantine", "move a poison job, or the failed jobs matching a regex, to its DLQ"),
    ("dlq list", "what is quarantined in a queue's DLQ, why, by whom, when"),
    ("dlq show", "one quarantined job: payload, reason, history"),
    ("dlq replay", "put the oldest N quarantined jobs back in their queue (a canary)"),
    ("job show", "one job as it is now: state, data, attempts, the latest failure"),
    # -- failures and find (issue 14) --
    ("failures", "what the failures have in common: failed jobs grouped by cause"),
    ("find", "find jobs by state, name, id, reason, payload or age (bounded scan)"),
    ("promote", "move delayed jobs to waiting now: one, all, or those matching filters"),
    ("remove", "remove the jobs matching filters to the DLQ (undo: dlq replay), or --purge"),
    ("pause", "pause a queue: workers take no new jobs"),
    ("resume", "resume a paused queue"),
    ("retry", "move failed jobs back to waiting, oldest first"),
    # -- queue actions (issue 14) --
    ("clean", "remove completed or failed jobs older than an age, oldest first"),
    ("empty", "remove every waiting and delayed job (type the queue's name to confirm)"),
    ("obliterate", "delete a queue and all its jobs (type its name to confirm)"),
    ("add", "add one job with a JSON payload, optionally delayed or prioritised"),
    ("schedulers", "job schedulers and repeatable jobs: next run, last completed run"),
    # -- workers (issue 14) --
    ("workers", "the npm bullmq Workers connected per queue: address, age, idle"),
    ("incident declare", "open an incident channel as an alert does: status, checklist, buttons"),
    ("incident convert", "make the channel you are in the incident channel (status, topic, page)"),
    ("incident lead", "who leads this channel's incident (a hand-over with --note); acks the page"),
    ("incident severity", "change this channel's incident severity (pages at PAGE_SEVERITY)"),
    ("incident update", "post a status update: in the channel, on the status, to stakeholders"),
    ("incident followup", "add a follow-up to this incident's postmortem, also once resolved"),
    ("drain", "call the app's drain endpoint now; results per queue"),
    ("cron status", "the drain cron: on or off, cadence, last and next tick"),
    ("cron history", "the last drains: queues, HTTP status, processed, failed, duration"),
    ("cron pause", "stop draining (ticks still probe the queues)"),
    ("cron resume", "drain again"),
    ("cron every", "change the drain cron's cadence"),
    ("budget", "Redis commands a month when idle, per worker mode, and per snapshot"),
    ("mode", "show or switch the worker mode (always-on or cron), after a preview"),
    ("db init-dlq", "create the DB queue's DLQ table (QUEUE_JOBS_DLQ_TABLE) if missing"),
    ("rotate-token", "rotate the drain endpoint's token with no moment of rejection"),
    ("help", "every command with its usage, role and an example"),
)
USAGE = """usage: queueops COMMAND [ARGUMENTS] [--json] [--yes] [--env NAME]
       queueops COMMAND --help
       queueops shell [--demo] | queueops serve | queueops --version

Every /queue command of the Slack bot, from a terminal, against the Redis at REDIS_URL
(and the DB-backed job table at QUEUE_JOBS_DATABASE_URL, when set).
--json prints one JSON document instead of text; --yes applies what would otherwise ask
first (a worker mode switch). The terminal has the admin role. With several Redis
deployments (QUEUEOPS_REDIS_URLS), --env NAME picks one (before or after the command); a
snapshot without it shows each.
"""
HELP_TAIL = """
  shell                the whole bot in a terminal: type commands as in Slack (--demo:
                       an embedded Redis holding a bad night's queues to try them on)
  serve                run the Slack bot and the alert intake on PORT (3000)

`queueops COMMAND --help` prints a command's arguments and examples.

exit status: 0 ok, 1 the operation failed (Redis unreachable, a job not found, refused),
2 a usage or configuration error. Errors are one line on stderr.

environment (configuration is read when a command runs, and checked then):
  REDIS_URL            the Redis of the queues: redis://, rediss:// or unix:///path.sock
                       (default redis://localhost:6379/0)
  QUEUEOPS_PREFIX      BullMQ's key prefix (default bull)
  QUEUEOPS_QUEUES      the queues, separated by commas (default: those found in Redis)
  QUEUEOPS_ROLES       who may run what from Slack and the shell,
                       e.g. admin=U1,U2;operator=S0GROUP;viewer=*
  SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET
                       the Slack app, for serve (or SLACK_APP_TOKEN for Socket Mode)
  DRAIN_URL            the app whose drain endpoint drain, cron and mode call
  QUEUEOPS_REDIS_URLS  several Redis deployments, e.g. prod=redis://a,staging=redis://b
                       (--env NAME picks one; DRAIN_URL_<ENV> is each one's app)
"""


def top_level_help() -> str:
    """`queueops --help`: from the constants above alone (imports nothing)."""
    rows = "".join(f"  {name:<19}  {about}\n" for name, about in COMMAND_LINES)
    return USAGE + "\ncommands:\n" + rows + HELP_TAIL


SERVE_USAGE = """usage: queueops serve

Run the Slack bot: POST /slack/events, /alerts/alertmanager, /alerts/generic, GET /healthz,
/readyz and /metrics on PORT (3000), with the drain cron and the incident watcher. Reads the
environment (REDIS_URL, SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET or SLACK_APP_TOKEN, DRAIN_URL,
DRAIN_EVERY, ...); stops cleanly on SIGTERM or Ctrl-C.
"""


def _actor() -> str:
    import getpass

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
    no `--yes` it changes nothing and says so.
    """
    import asyncio

    from bot.environments import Environments
    from bot.errors import UsageError
    from bot.render_text import render_text
    from bot.roles import Role
    from commands.reply import ErrorReply
    from commands.runner import ConfirmationNeeded

    # One-shot: no name, no HELLO; one INFO tells a cluster (bot/redis_client.py); only the
    # environment the command runs in is connected. No Prometheus metrics: nothing reads them.
    envs = Environments(settings, rate_limited=False, metrics=False)
    try:
        env, words = envs.pick(words)
    except UsageError as err:
        return ErrorReply(message=str(err), exit_code=err.exit_code)
    env_words = f" --env {env}" if env is not None else ""

    async def admin(_: str) -> Role:
        return Role.ADMIN

    try:

        async def run(command_words: Sequence[str], confirmed: bool) -> Reply:
            outcome = await envs.run(
                env,
                command_words,
                role_in=admin,
                actor=_actor(),
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
                message="not confirmed (no terminal): nothing changed; to apply, rerun with "
                f"--yes: queueops {reply.command}{env_words} --yes"
            )
        print(render_text(reply.preview.view()))
        print(f"-- to apply: queueops {reply.command}{env_words}")
        answer = await asyncio.to_thread(input, "apply it? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return ErrorReply(message="not confirmed: nothing changed")
        return await run(reply.words, True)
    finally:
        await envs.aclose()


def emit(reply: Reply, *, as_json: bool) -> int:
    """Print a reply the CLI way and return its exit code."""
    import json

    from bot.render_text import render_text
    from bot.urls import hide_url_credentials
    from commands.reply import ErrorReply

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
    if not reply.ok:  # a snapshot of several environments, one of which failed
        return int(getattr(reply, "exit_code", 1))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `queueops snapshot | head`: the reader left; so do we, quietly
        from contextlib import suppress

        with suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def package_version() -> str:
    """The installed version, from the package's metadata. Read directly: importlib.metadata
    would cost `--version` more than the rest of it."""
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.startswith("queueops-") and name.endswith(".dist-info"):
                try:
                    with open(os.path.join(entry, name, "METADATA"), encoding="utf-8") as file:
                        for line in file:
                            if line.startswith("Version:"):
                                return line.removeprefix("Version:").strip()
                            if not line.strip():  # the headers are over
                                break
                except OSError:
                    pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("queueops")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def usage_of(words: Sequence[str]) -> tuple[str, int]:
    """(the usage to print for `queueops WORDS --help`, exit code); touches nothing."""
    if not words:
        return top_level_help(), 0
    if words[0] == "serve":
        return SERVE_USAGE, 0
    from bot.errors import UsageError
    from bot.render_text import render_text
    from commands.help import help_for

    try:
        reply = help_for(words, prefix="queueops ")
    except UsageError as err:
        return f"queueops: {err}\n", 2
    return render_text(reply.view()) + "\n", 0


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
        helped = [a for a in words if a not in HELP_FLAGS]
        if any(a == "--env" or a.startswith("--env=") for a in helped):
            from bot.environments import split_env
            from bot.errors import UsageError

            try:
                helped = split_env(helped)[1]
            except UsageError:
                helped = [a for a in helped if not a.startswith("--env")]
        text, code = usage_of(helped)
        print(text, end="", file=sys.stdout if code == 0 else sys.stderr)
        return code
    from commands.reply import ErrorReply

    if words[0] == "serve" and len(words) > 1:
        return emit(
            ErrorReply(
                message=f"serve takes no arguments (got {' '.join(words[1:])!r})", exit_code=2
            ),
            as_json=as_json,
        )
    from bot.config import load_settings
    from bot.errors import ConfigError

    try:
        settings = load_settings()
    except ConfigError as err:
        return emit(ErrorReply(message=f"configuration: {err}", exit_code=2), as_json=as_json)
    if words[0] == "serve":
        from bot.http_app import serve

        return serve(settings)
    import asyncio

    try:
        reply = asyncio.run(run_words(words, settings, assume_yes=assume_yes, as_json=as_json))
    except KeyboardInterrupt:
        return emit(ErrorReply(message="interrupted", exit_code=1), as_json=as_json)
    except Exception as err:  # a bug: still one line, the traceback only on request
        if os.environ.get("QUEUEOPS_DEBUG"):
            import traceback

            traceback.print_exc()
        first = str(err).splitlines()[0] if str(err) else ""
        reply = ErrorReply(
            message=f"internal error ({type(err).__name__}: {first}); "
            "set QUEUEOPS_DEBUG=1 for the traceback"
        )
    return emit(reply, as_json=as_json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
