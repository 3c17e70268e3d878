"""Every command's `--json`: one key style (camelCase) across all of them, as docs/json.md
documents; the keys of data maps (a snapshot's `counts`, a job's `data`, per-queue maps)
are data and stay as they are."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from conftest import REDIS_URL, NodeCall

from bot.config import load_settings
from bot.dispatch import make_dispatcher
from bot.drain import DrainResponse, QueueDrain
from bot.queues.postgres.schema import DlqSetup
from bot.roles import Role
from commands.cron import CronHistoryReply
from commands.db import InitDlqReply
from commands.drain import DrainReply
from commands.registry import all_commands
from commands.reply import Reply
from commands.rotate import RotatePreview, RotateReply
from commands.runner import ConfirmationNeeded
from scheduler.state import DrainRun

DOCS = Path(__file__).resolve().parent.parent / "docs" / "json.md"
DATA_MAPS = {"counts", "data", "opts", "queues", "series"}
"""Keys whose value, when a map, has data for keys: npm bullmq's state names, a job's own
payload and options, queue names. Their values are still checked below them."""


def underscored_keys(doc: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            where = f"{path}.{key}"
            if path.rsplit(".", 1)[-1] in DATA_MAPS:
                if not isinstance(value, dict | list):
                    continue
                found += underscored_keys(value, where)
                continue
            if "_" in str(key):
                found.append(where)
            if key in ("data", "opts"):
                continue  # a job's own payload and options: whatever the app wrote
            found += underscored_keys(value, where)
    elif isinstance(doc, list):
        for i, item in enumerate(doc):
            found += underscored_keys(item, f"{path}[{i}]")
    return found


async def test_every_commands_json_is_camel_case(
    redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    settings = load_settings(
        redis_url=REDIS_URL, prefix=prefix, state_prefix=f"{prefix}-state", queues="a"
    )
    dispatcher = make_dispatcher(redis, settings, rate_limited=False)
    await node("fail", queue="a", count=3, reason="poison")
    seen: dict[str, list[Reply]] = {}

    async def run(line: str, *, confirmed: bool = True) -> Reply:
        outcome = await dispatcher.run(
            shlex.split(line), actor="test", role=Role.ADMIN, transport="shell", confirmed=confirmed
        )
        seen.setdefault(outcome.command or "?", []).append(outcome.reply)
        return outcome.reply

    assert isinstance(await run("quarantine a --failed-matching poison", confirmed=False), Reply)
    await run("quarantine a --failed-matching '#1'")
    await run("quarantine a --failed-matching nothing-matches", confirmed=False)
    await run("quarantine a 3 --reason bad")
    await run("quarantine a 999 --reason gone")
    for line in (
        "snapshot",
        "snapshot a --chart",
        "dlq list a",
        "dlq show a 2",
        "job show a 1",
        # -- failures and find (issue 14) --
        "failures a",
        "find a --state failed --name poison",
        "promote a --name poison --dry-run",
        "remove a --state failed --name poison --dry-run",
        # -- queue actions (issue 14) --
        "clean a --state completed --older-than 1h",
        "empty a --confirm a",
        "obliterate a",
        """add a backfill '{"invoice": 42}' --delay 1m --priority 2""",
        "schedulers a",
        # -- workers (issue 14) --
        "workers a",
        'incident declare "a is stuck" --queue a',
        "incident convert --severity sev3",
        "incident lead <@U123>",
        "incident severity sev1",
        'incident update "scaled up"',
        'incident followup "alert on age"',
        # -- job detail and edit-then-replay (issue 14) --
        "dlq replay a 2 --set payload.text=fixed",
        "job show a 999",
        "retry a --count 1",
        "pause a",
        "resume a",
        "cron status",
        "cron pause",
        "cron resume",
        "cron every 15m",
        "cron history",
        "budget",
        "mode",
        "mode cron",
        "help",
        "help pause",
        "pause --help",
    ):
        await run(line)
    assert isinstance(await run("mode always-on", confirmed=False), ConfirmationNeeded)
    assert isinstance(await run("dlq replay a", confirmed=False), ConfirmationNeeded)
    await run("dlq replay a --count 1")
    assert not (await run("snapshot nope")).ok
    # What needs an app to drain or a deployment to change, built as the commands build it.
    seen["drain"] = [
        DrainReply(
            queue=None,
            result=DrainResponse(
                ok=True,
                duration_ms=12,
                total_processed=2,
                total_failed=0,
                queues={"a_b": QueueDrain(jobs_processed=2, jobs_failed=0, idle_at=0)},
            ),
        )
    ]
    assert not (await run("db init-dlq")).ok  # no DB queue configured: one line
    seen["db init-dlq"].append(
        InitDlqReply(
            setup=DlqSetup(
                table="queue_jobs_dlq",
                created=True,
                replayed_at=True,
                missing_indexes=["CREATE INDEX CONCURRENTLY ..."],
            )
        )
    )
    seen["rotate-token"] = [
        RotatePreview(backend="dotenv", wait="10m"),
        RotateReply(rotated=True, waited_ms=1500, backend="dotenv"),
    ]
    seen["cron history"].append(
        CronHistoryReply(runs=[DrainRun(at_ms=1, queues=["a"], status=200, duration_ms=5)])
    )

    assert set(seen) >= {c.name for c in all_commands()}
    for name, replies in seen.items():
        for reply in replies:
            doc = reply.data()
            assert underscored_keys(doc) == [], (name, doc)


def test_the_json_shapes_are_documented_for_every_command() -> None:
    text = DOCS.read_text()
    headings = set(re.findall(r"^## `([^`]+)`", text, flags=re.MULTILINE))
    for command in all_commands():
        assert command.name in headings, f"docs/json.md has no section for {command.name}"


def test_reply_fields_are_camel_case_and_still_built_by_name() -> None:
    from commands.control import PauseReply

    reply = PauseReply(queue="a", paused=True, was_paused=False)
    assert reply.data() == {"ok": True, "queue": "a", "paused": True, "wasPaused": False}
    assert PauseReply.model_validate(reply.data()) == reply
