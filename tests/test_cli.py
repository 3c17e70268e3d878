"""`queueops` as a user runs it: the installed console script, in a subprocess.

Exit 0 on success, 1 when the operation failed, 2 for usage or configuration; errors are
one line on stderr naming the culprit; `--json` prints one JSON document."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from cli_runner import Run, run_cli
from conftest import REDIS_URL, NodeCall

from bot.embedded_redis import free_port
from bot.queues.keys import COUNT_STATES
from bot.queues.service import QueueService


async def queueops(*args: str, **env: str) -> Run:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEOPS_")}
    # queueops' own keys (the audit stream) go under the test's prefix too, to be cleaned up.
    state = {"QUEUEOPS_STATE_PREFIX": f"{env.get('QUEUEOPS_PREFIX', 'qo-test-cli')}-state"}
    full_env = {**inherited, "REDIS_URL": REDIS_URL, **state, **env}
    run = Run(*await run_cli(args, full_env))
    assert "Traceback" not in run.err, run.err
    return run


def one_error_line(run: Run) -> str:
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("queueops: ")
    return lines[0]


async def test_snapshot_json_has_getjobcounts_keys(service: QueueService, prefix: str) -> None:
    await service.store.bullmq(service.ref("batch-jobs")).add("render", {"doc": 1})
    await service.store.bullmq(service.ref("dsar-jobs")).add(
        "export", {"user": 7}, {"delay": 60_000}
    )
    run = await queueops("snapshot", "--json", QUEUEOPS_PREFIX=prefix)
    assert run.code == 0 and run.err == ""
    doc = run.json()
    assert [q["name"] for q in doc["queues"]] == ["batch-jobs", "dsar-jobs"]
    batch = doc["queues"][0]
    assert list(batch["counts"]) == list(COUNT_STATES)
    assert batch["counts"]["waiting"] == 1 and doc["queues"][1]["counts"]["delayed"] == 1
    assert batch["topWaitingNames"] == [{"key": "render", "count": 1}]
    assert batch["status"] == "healthy" and batch["dlqDepth"] == 0

    text = await queueops("snapshot", QUEUEOPS_PREFIX=prefix)
    assert text.code == 0 and "batch-jobs" in text.out and "WAITING" in text.out


async def test_quarantine_then_dlq_list_show_replay(service: QueueService, prefix: str) -> None:
    job = await service.store.bullmq(service.ref("q")).add("pdf", {"doc": 42})
    run = await queueops(
        "quarantine", "q", str(job.id), "--reason", "bad pdf", QUEUEOPS_PREFIX=prefix
    )
    assert run.code == 0, run.err
    assert f"job {job.id} moved from 'q' (waiting) to 'q-dlq'" in run.out
    listing = (await queueops("dlq", "list", "q", "--json", QUEUEOPS_PREFIX=prefix)).json()
    [entry] = listing["listing"]["entries"]
    assert entry["quarantineReason"] == "bad pdf" and entry["quarantinedBy"].startswith("cli")
    show = await queueops("dlq", "show", "q", str(job.id), QUEUEOPS_PREFIX=prefix)
    assert '"doc": 42' in show.out and "bad pdf" in show.out
    replay = await queueops("dlq", "replay", "q", "--json", QUEUEOPS_PREFIX=prefix)
    assert replay.json()["result"]["replayed"][0]["jobId"] == str(job.id)


@pytest.mark.parametrize(
    ("args", "env", "code", "says"),
    [
        (
            ["snapshot", "nope"],
            {"QUEUEOPS_QUEUES": "a,b"},
            1,
            "unknown queue 'nope' (QUEUEOPS_QUEUES: a, b)",
        ),
        (["quarantine", "a", "--reason", "x"], {"QUEUEOPS_QUEUES": "a"}, 2, "give a JOB_ID"),
        (
            ["quarantine", "a", "77", "--reason", "x"],
            {"QUEUEOPS_QUEUES": "a"},
            1,
            "job 77 not found in queue 'a'",
        ),
        (
            ["quarantine", "a", "--failed-matching", "[x"],
            {"QUEUEOPS_QUEUES": "a"},
            2,
            "is not a valid regex",
        ),
        (["frob"], {}, 2, "unknown command 'frob'"),
        (
            ["snapshot"],
            {"REDIS_URL": "redis://127.0.0.1:1/0"},
            1,
            "Redis unreachable at 127.0.0.1:1 (REDIS_URL)",
        ),
        (
            ["snapshot"],
            {"REDIS_URL": "redis//nowhere"},
            2,
            "configuration: REDIS_URL: 'redis//nowhere' must start with redis://",
        ),
        (["snapshot"], {"DRAIN_EVERY": "soon"}, 2, "configuration: DRAIN_EVERY:"),
    ],
)
async def test_errors_are_one_line_with_the_right_exit_code(
    prefix: str, args: list[str], env: dict[str, str], code: int, says: str
) -> None:
    run = await queueops(*args, QUEUEOPS_PREFIX=prefix, **env)
    assert run.code == code
    assert says in one_error_line(run)
    assert run.out == ""
    as_json = await queueops(*args, "--json", QUEUEOPS_PREFIX=prefix, **env)
    assert as_json.code == code and as_json.json()["error"] in one_error_line(as_json)


async def test_an_active_job_is_refused_with_exit_1(prefix: str, node: NodeCall) -> None:
    ids = (await node("populate", queue="emails"))["ids"]
    run = await queueops(
        "quarantine", "emails", ids["active"][0], "--reason", "x", QUEUEOPS_PREFIX=prefix
    )
    assert run.code == 1 and "a worker holds its lock" in one_error_line(run)


@pytest_asyncio.fixture
async def not_redis() -> AsyncIterator[int]:
    """A local TCP server that answers like an HTTP proxy, not like Redis."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_a_server_that_is_not_redis_is_one_line(not_redis: int, prefix: str) -> None:
    run = await queueops(
        "snapshot", REDIS_URL=f"redis://127.0.0.1:{not_redis}/0", QUEUEOPS_PREFIX=prefix
    )
    assert run.code == 1
    assert f"Redis at 127.0.0.1:{not_redis} answered unexpectedly" in one_error_line(run)


async def test_help_lists_every_command(prefix: str) -> None:
    run = await queueops("help", QUEUEOPS_PREFIX=prefix)
    assert run.code == 0
    for usage in ("snapshot [QUEUE ...]", "dlq replay QUEUE", "retry QUEUE [--count N]"):
        assert usage in run.out


async def test_cli_commands_are_audited(service: QueueService, prefix: str) -> None:
    await service.store.bullmq(service.ref("q")).add("pdf", {})
    run = await queueops(
        "pause", "q", QUEUEOPS_PREFIX=prefix, QUEUEOPS_STATE_PREFIX=f"{prefix}-state"
    )
    assert run.code == 0
    rows = await service.redis.xrange(f"{prefix}-state:audit")
    [(_, entry)] = rows
    assert entry["transport"] == "cli" and entry["words"] == "pause q"
    assert entry["outcome"] == "ok" and entry["actor"].startswith("cli")


@pytest.mark.parametrize(
    ("args", "env", "code", "says"),
    [
        (
            ["snapshot"],
            {"REDIS_URL": "redis://127.0.0.1:1/0?socket_timeout=abc"},
            2,
            "socket_timeout",
        ),
        (
            ["snapshot"],
            {"REDIS_URL": "redis://127.0.0.1:1/0?sokcet_timeout=1"},
            2,
            "sokcet_timeout",
        ),
        (
            ["snapshot"],
            {"REDIS_URL": "unix:///nonexistent/redis.sock?db=2"},
            1,
            "Redis unreachable at /nonexistent/redis.sock (REDIS_URL)",
        ),
        (["serve"], {"DRAIN_EVERY": "999999999999d"}, 2, "DRAIN_EVERY: 999999999999d is longer"),
        (["serve"], {"DRAIN_EVERY": "2d"}, 2, "DRAIN_EVERY: 2d is longer than 1d"),
        (["cron", "every", "99999d"], {}, 2, "DURATION: 99999d is longer than a year"),
        (["cron", "every", "2d"], {}, 2, "DURATION: 2d is longer than 1d"),
        (["mode", "cron", "--every", "25h"], {}, 2, "--every: 1d1h is longer than 1d"),
        (["drain", "--max-duration", "1h"], {}, 2, "--max-duration: 1h is not within 1s and 10m"),
        (["pause", "orders\n"], {}, 2, "QUEUE: 'orders\\n' is not a queue name"),
        (["serve", "now"], {}, 2, "serve takes no arguments"),
        (
            ["mode"],
            {"WORKER_MODE_BACKEND": "dotenv", "WORKER_MODE_DOTENV": "/nonexistent-qo/app/.env"},
            2,
            "configuration: WORKER_MODE_DOTENV: the folder /nonexistent-qo/app",
        ),
    ],
)
async def test_configuration_and_argument_edges_are_one_line(
    prefix: str, args: list[str], env: dict[str, str], code: int, says: str
) -> None:
    run = await queueops(*args, QUEUEOPS_PREFIX=prefix, **env)
    assert run.code == code and says in one_error_line(run), run.err
    assert "internal error" not in run.err


async def test_a_missing_dotenv_file_is_named_not_redis(prefix: str, tmp_path: Path) -> None:
    missing = tmp_path / "app.env"
    run = await queueops(
        "mode",
        QUEUEOPS_PREFIX=prefix,
        WORKER_MODE_BACKEND="dotenv",
        WORKER_MODE_DOTENV=str(missing),
    )
    assert run.code == 1
    line = one_error_line(run)
    assert f"WORKER_MODE_DOTENV: cannot read {missing}" in line and "Redis" not in line


async def test_a_redis_not_from_redis_url_is_not_blamed_on_it(prefix: str) -> None:
    from bot.cli import run_words
    from bot.config import load_settings
    from bot.embedded_redis import free_port

    closed = f"redis://127.0.0.1:{free_port()}/0"
    settings = load_settings(prefix=prefix, state_prefix=f"{prefix}-state")
    embedded = settings.with_redis(closed, origin="the embedded Redis")
    reply = await run_words(["snapshot"], embedded)
    message = getattr(reply, "message", "")
    assert "Redis unreachable at 127.0.0.1:" in message and "(the embedded Redis)" in message
    assert "REDIS_URL" not in message
    given = load_settings(redis_url=closed, prefix=prefix, state_prefix=f"{prefix}-state")
    assert "(REDIS_URL)" in getattr(await run_words(["snapshot"], given), "message", "")


@pytest_asyncio.fixture
async def watched_port() -> AsyncIterator[tuple[int, list[int]]]:
    """A port that counts who connects to it: REDIS_URL points here, nothing may come."""
    connections: list[int] = []

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writer.close()

    server = await asyncio.start_server(count, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], connections
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (["--help"], "usage: queueops COMMAND"),
        (["-h"], "usage: queueops COMMAND"),
        ([], "usage: queueops COMMAND"),
        (["snapshot", "--help"], "usage: queueops snapshot [QUEUE ...]"),
        (["pause", "--help"], "usage: queueops pause QUEUE"),
        (["pause", "q", "-h"], "usage: queueops pause QUEUE"),
        (["dlq", "replay", "--help"], "usage: queueops dlq replay QUEUE"),
        (["cron", "--help"], "usage: queueops cron every DURATION"),
        (["mode", "--help", "--json"], "usage: queueops mode"),
        (["serve", "--help"], "usage: queueops serve"),
        (["shell", "--help"], "usage: queueops shell"),
    ],
)
async def test_help_prints_usage_and_touches_nothing(
    watched_port: tuple[int, list[int]], args: list[str], usage: str
) -> None:
    redis_port, connections = watched_port
    app_port = free_port()
    run = await queueops(
        *args,
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        PORT=str(app_port),
        DRAIN_URL=f"http://127.0.0.1:{redis_port}",
    )
    assert run.code == 0 and run.err == ""
    assert run.out.startswith(usage) or f"\n{usage}" in run.out, run.out
    await asyncio.sleep(0)  # let the counting server accept anything already queued
    assert connections == []


async def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    run = await queueops("--version", REDIS_URL="redis://127.0.0.1:1/0")
    assert run.code == 0 and run.out == f"queueops {version('queueops')}\n"


# A CLI is typed many times: `--help` and `--version` import nothing heavy, and a command
# imports its own family and what that needs (commands/registry.py's FAMILIES).
REPORT_MODULES = (
    "import json, sys\n"
    "from bot.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    "sys.exit(code)\n"
)
HEAVY = ("boto3", "matplotlib", "slack_sdk", "slack_bolt", "aiohttp", "apscheduler", "httpx")


async def modules_after(*args: str, **env: str) -> tuple[Run, set[str]]:
    """Run bot.cli.main(ARGS) in a fresh interpreter; (the run, every module it imported)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        REPORT_MODULES,
        *args,
        env={k: v for k, v in os.environ.items() if not k.startswith("QUEUEOPS_")} | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    *errors, modules = err.decode().splitlines()
    run = Run(proc.returncode or 0, out.decode(), "\n".join(errors))
    return run, set(json.loads(modules))


def imported(modules: set[str], package: str) -> bool:
    return any(m == package or m.startswith(package + ".") for m in modules)


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["-h"], []])
async def test_help_and_version_import_no_redis_pydantic_or_command(args: list[str]) -> None:
    run, modules = await modules_after(*args, REDIS_URL="redis://127.0.0.1:1/0")
    assert run.code == 0 and run.err == "", run.err
    for package in ("redis", "pydantic", "pydantic_settings", "bullmq", *HEAVY):
        assert not imported(modules, package), package
    ours = sorted(m for m in modules if m.split(".")[0] in ("bot", "commands", "scheduler"))
    assert ours == ["bot", "bot.cli"]


async def test_snapshot_imports_only_its_family_and_nothing_heavy(
    service: QueueService, prefix: str
) -> None:
    from commands.registry import FAMILIES

    await service.store.bullmq(service.ref("batch-jobs")).add("render", {})
    run, modules = await modules_after(
        "snapshot", REDIS_URL=REDIS_URL, QUEUEOPS_PREFIX=prefix, QUEUEOPS_STATE_PREFIX=prefix
    )
    assert run.code == 0 and "batch-jobs" in run.out, run.err
    for package in (*HEAVY, "bullmq", "re2", "prometheus_client", "bot.metrics"):
        assert not imported(modules, package), package
    families = {m for m in FAMILIES.values() if m in modules}
    assert families == {"commands.snapshot"}


def test_top_level_help_lists_exactly_the_registry_commands() -> None:
    from bot.cli import COMMAND_LINES, top_level_help
    from commands.registry import all_commands

    registry = [c.name for c in all_commands()]
    assert [name for name, _ in COMMAND_LINES] == registry, (
        f"bot/cli.py's COMMAND_LINES must list the registry's commands, in its order: {registry}"
    )
    lines = top_level_help().splitlines()
    listed = [line.split("  ")[1] for line in lines if line.startswith("  ") and line[2] != " "]
    assert listed[: len(registry)] == registry  # one line each, in the registry's order
    assert listed[len(registry) : len(registry) + 2] == ["shell", "serve"]
    assert all(len(line) <= 100 for line in lines)


def test_top_level_help_names_the_real_environment_and_exit_codes() -> None:
    from bot.cli import top_level_help
    from bot.config import Settings

    text = top_level_help()
    for words in ("shell", "serve", "--json", "--version", "queueops COMMAND --help"):
        assert words in text, words
    assert "0 ok, 1 the operation failed" in text and "2 a usage or configuration error" in text
    known = set()
    for info in Settings.model_fields.values():
        alias = info.validation_alias
        known.update([alias] if isinstance(alias, str) else getattr(alias, "choices", []))
    named = {w.strip(",.;:()") for w in text.split() if w.isupper() and "_" in w}
    assert named >= {
        "REDIS_URL",
        "QUEUEOPS_PREFIX",
        "QUEUEOPS_QUEUES",
        "QUEUEOPS_ROLES",
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "DRAIN_URL",
    }
    assert named <= known, named - known
    for word in ("seed", "DESIGN.md", "../shared"):
        assert word not in text


async def test_every_command_family_is_in_the_registry_table() -> None:
    """Each command's first word names the module that registers it, and help's order is
    FAMILIES' whichever family a process imported first."""
    from commands.registry import FAMILIES, all_commands

    for command in all_commands():
        assert FAMILIES[command.name.split()[0]] == command.run.__module__, command.name
    script = (
        "from commands.registry import all_commands, resolve\n"
        "resolve(['mode'])\n"
        "print(' / '.join(c.name for c in all_commands()))\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert out.decode().strip() == " / ".join(c.name for c in all_commands())
