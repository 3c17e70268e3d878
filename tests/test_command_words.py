"""What a person reads: help for every command in every transport, `--json` and `--yes`
in the shell, prompts that quote what to paste back, `!as`, natural orders, plurals, and
the drain cron saying why it is off."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import pytest
import redis.asyncio as aioredis
from conftest import REDIS_URL, NodeCall
from slack_helpers import MakeBot, slash, text_of
from slack_stub import SlackStub
from test_shell import run as run_queueops

from bot.cli import usage_of
from bot.config import load_settings
from bot.dispatch import make_dispatcher
from bot.render_text import render_text
from bot.roles import Role
from bot.shell import Shell
from bot.text import plural
from commands.control import PauseReply
from commands.dlq import DlqListReply, DlqReplayReply, DlqShowReply
from commands.help import CommandHelpReply
from commands.quarantine import BulkPreviewReply, BulkQuarantineReply
from commands.registry import all_commands
from commands.reply import Reply
from commands.runner import ConfirmationNeeded

CLOSED = "redis://127.0.0.1:1/0"  # nothing listens: help must not need it


def dispatcher_for(redis: aioredis.Redis, prefix: str, **overrides: Any) -> Any:
    settings = load_settings(
        redis_url=REDIS_URL,
        prefix=prefix,
        state_prefix=f"{prefix}-state",
        queues="a",
        **overrides,
    )
    return make_dispatcher(redis, settings, rate_limited=False)


async def say(
    dispatcher: Any, line: str, *, confirmed: bool = True, role: Role = Role.ADMIN
) -> Reply:
    outcome = await dispatcher.run(
        shlex.split(line), actor="t", role=role, transport="shell", confirmed=confirmed
    )
    reply: Reply = outcome.reply
    return reply


# -- 4. help --------------------------------------------------------------------------


@pytest.mark.parametrize("name", [c.name for c in all_commands()])
def test_every_command_has_usage_a_sentence_explained_flags_and_an_example(name: str) -> None:
    [command] = [c for c in all_commands() if c.name == name]
    text, code = usage_of([*name.split(), "--help"][: len(name.split())])
    assert code == 0
    lines = text.splitlines()
    assert lines[0] == f"usage: queueops {command.usage}"
    assert lines[1] == f"{command.summary} ({command.role.label} role)"
    assert "arguments:" in lines and "e.g." in lines
    rows = lines[lines.index("arguments:") + 1 : lines.index("e.g.")]
    assert rows and any(r.split()[0] == "--json" for r in rows)
    for row in rows:
        flag, _, about = row.strip().partition("  ")
        assert about.strip(), f"{name}: {flag} has no explanation"
    if command.parser is not None:
        for flag in command.parser().option_names():
            if flag != "--expect-env":  # set by the confirmation itself, never typed
                assert any(r.split()[0] == flag for r in rows), (name, flag)
    for example in command.examples:
        assert f"  queueops {example}" in lines


@pytest.mark.parametrize(
    ("line", "starts"),
    [
        ("snapshot --help", "usage: snapshot [QUEUE ...] [--chart]"),
        ("help pause", "usage: pause QUEUE"),
        ("pause --help", "usage: pause QUEUE"),
        ("/queue help dlq replay", "usage: dlq replay QUEUE [--count 10]"),
        ("cron -h", "usage: cron status"),
    ],
)
async def test_help_in_the_shell_touches_nothing(line: str, starts: str) -> None:
    code, out, err = await run_queueops("shell", "-e", line, REDIS_URL=CLOSED)
    assert code == 0, out + err
    assert out.startswith(starts), out
    assert "--json" in out and "e.g." in out and "unreachable" not in out


async def test_help_is_for_everyone_and_typos_get_a_guess(
    redis: aioredis.Redis, prefix: str
) -> None:
    d = dispatcher_for(redis, prefix)
    reply = await say(d, "rotate-token --help", role=Role.VIEWER)  # an admin command
    assert isinstance(reply, CommandHelpReply) and reply.ok
    assert "--wait DURATION" in render_text(reply.view())
    guess = await say(d, "help snapshott")
    assert not guess.ok and "did you mean 'snapshot'?" in getattr(guess, "message", "")
    code, _, err = await run_queueops("snapshott", REDIS_URL=CLOSED)
    assert code == 2 and "did you mean 'snapshot'?" in err


@pytest.mark.parametrize("text", ["help pause", "pause --help"])
async def test_help_in_slack_is_the_same_and_only_for_the_asker(
    make_bot: MakeBot, slack: SlackStub, text: str
) -> None:
    bot = await make_bot()
    await slash(bot, slack, text, user="UVIEW")  # a viewer: help is for everyone
    [reply] = await slack.wait_for("respond:r1")
    assert reply.body["response_type"] == "ephemeral"
    said = text_of(reply.body)
    assert "usage: pause QUEUE" in said and "the queue to pause" in said


# -- 6. --json in the shell -----------------------------------------------------------


def steady(doc: dict[str, Any]) -> dict[str, Any]:
    """The snapshot without what moves between two runs (the oldest job's age)."""
    for q in doc["queues"]:
        q.pop("oldestWaitingAgeMs")
    return doc


async def test_shell_json_is_the_cli_json(service: Any, prefix: str) -> None:
    await service.store.bullmq(service.ref("a")).add("render", {"doc": 1})
    env = {"REDIS_URL": REDIS_URL, "QUEUEOPS_PREFIX": prefix}
    code, cli_out, err = await run_queueops("snapshot", "--json", **env)
    assert code == 0, err
    code, shell_out, err = await run_queueops("shell", "-e", "snapshot --json", **env)
    assert code == 0, err
    assert steady(json.loads(shell_out)) == steady(json.loads(cli_out))
    code, out, _ = await run_queueops("shell", "-e", "pause nope --json", **env)
    assert code == 1 and json.loads(out)["ok"] is False


# -- 7. confirmations -----------------------------------------------------------------


async def test_a_bulk_action_that_matches_nothing_asks_nothing(
    redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    await node("fail", queue="a", count=2, reason="poison")
    d = dispatcher_for(redis, prefix)
    none = await say(d, "quarantine a --failed-matching nothing-like-it", confirmed=False)
    assert isinstance(none, BulkPreviewReply)
    assert render_text(none.view()) == (
        "-- no failed job in 'a' matches /nothing-like-it/ (2 failed jobs read); nothing to move"
    )
    empty = await say(d, "dlq replay a", confirmed=False)
    assert isinstance(empty, DlqListReply)
    assert render_text(empty.view()) == "-- 'a-dlq' is empty; nothing to replay"
    # The terminal runs them at once: the same words.
    ran = await say(d, "quarantine a --failed-matching nothing-like-it")
    assert render_text(ran.view()).endswith("(2 failed jobs read); nothing moved")
    assert render_text((await say(d, "dlq replay a")).view()) == (
        "-- 'a-dlq' is empty; nothing to replay"
    )
    asked = await say(d, 'quarantine a --failed-matching "poison #1"', confirmed=False)
    assert isinstance(asked, ConfirmationNeeded)
    assert asked.command == "quarantine a --failed-matching 'poison #1'"
    assert shlex.split(asked.command) == asked.words  # pasted back, it is the same command


# -- 8. !as ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("roles", "lines", "says"),
    [
        (None, ["!as"], "-- you are shell:shell, role admin (the local user"),
        (
            None,
            ["!as U100", "!as"],
            "-- you are shell:U100, role viewer (default: QUEUEOPS_ROLES unset)",
        ),
        ("admin=U100", ["!as U100"], "-- now acting as shell:U100, role admin (QUEUEOPS_ROLES)"),
        ("admin=U100", ["!as U200"], "role viewer (default: not in QUEUEOPS_ROLES)"),
        ("admin=U100", ["!as U100", "!as me"], "-- now acting as shell:shell, role admin"),
        (None, ["!ask"], "error: unknown shell command '!ask'"),
        (None, ["!as k j"], "error: !as takes one Slack user id"),
    ],
)
async def test_as_says_who_you_are_and_where_the_role_comes_from(
    capsys: pytest.CaptureFixture[str], roles: str | None, lines: list[str], says: str
) -> None:
    settings = load_settings(redis_url=CLOSED, **({"roles": roles} if roles else {}))
    shell = Shell(settings, user=None, assume_yes=False)
    try:
        for line in lines:
            await shell.handle(line)
    finally:
        await shell.close()
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(says) or says in last, last
    if "unknown" in says:
        assert shell.user is None  # `!ask` is not `!as k`


# -- 9. natural orders ----------------------------------------------------------------


async def test_dlq_lists_newest_first_by_time_then_numeric_id(
    redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    await node("fail", queue="a", count=14, reason="poison")
    d = dispatcher_for(redis, prefix)
    await say(d, "quarantine a --failed-matching poison")  # one call: one time for all 14
    listing = await say(d, "dlq list a")
    assert isinstance(listing, DlqListReply)
    assert [e.job_id for e in listing.listing.entries] == [str(i) for i in range(14, 0, -1)]
    top = await say(d, "dlq list a --limit 3")  # the 14 share a time: the cut sees them all
    assert [e.job_id for e in top.listing.entries] == ["14", "13", "12"]  # type: ignore[attr-defined]
    preview = await say(d, "dlq replay a --count 3", confirmed=False)
    assert isinstance(preview, ConfirmationNeeded) and isinstance(preview.preview, DlqListReply)
    shown = [e.job_id for e in preview.preview.listing.entries]
    assert shown == ["1", "2", "3"]
    done = await say(d, "dlq replay a --count 3")
    assert isinstance(done, DlqReplayReply)
    assert [j.job_id for j in done.result.replayed] == shown  # what the preview showed
    again = await say(d, "dlq replay a --count 9")
    assert [j.job_id for j in again.result.replayed] == [str(i) for i in range(4, 13)]  # type: ignore[attr-defined]


async def test_a_tie_too_large_to_sort_keeps_the_sets_order_and_the_preview_still_tells_true(
    redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    """Past TIED_MAX entries sharing one time, neither the replay script nor the preview
    reads the whole group (each call of a replay would pay it): both follow the sorted
    set's own order (time, then the id's bytes), so the preview still lists what moves."""
    from bot.queues.bullmq import dlq as dlq_module

    count = dlq_module.TIED_MAX + 20
    await node("fail", queue="a", count=count, reason="poison")
    d = dispatcher_for(redis, prefix)
    await say(d, f"quarantine a --failed-matching poison --limit {count}")
    key = f"{prefix}:a-dlq:failed"
    members = [str(m) for m in await redis.zrange(key, 0, -1)]
    assert len(members) == count
    await redis.zadd(key, dict.fromkeys(members, 1_700_000_000_000), xx=True)  # one time
    preview = await say(d, "dlq replay a --count 3", confirmed=False)
    assert isinstance(preview, ConfirmationNeeded) and isinstance(preview.preview, DlqListReply)
    expected = sorted(members)[:3]  # the set's order within one score: the ids' bytes
    assert [e.job_id for e in preview.preview.listing.entries] == expected
    done = await say(d, "dlq replay a --count 3")
    assert isinstance(done, DlqReplayReply)
    assert [j.job_id for j in done.result.replayed] == expected


async def test_dlq_show_labels_the_payload_and_the_jobs_own_stack_trace(
    redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    await node("fail", queue="a", count=1, reason="poison")
    d = dispatcher_for(redis, prefix)
    await say(d, "quarantine a 1 --reason bad")
    shown = await say(d, "dlq show a 1")
    assert isinstance(shown, DlqShowReply)
    text = render_text(shown.view())
    assert "\ndata (the job's payload)\n" in text
    assert "\nthe job's own stack trace (from its worker, when it last failed)\n" in text
    assert text.index("original failure") < text.index("data (") < text.index("stack trace")


# -- 10. plurals ----------------------------------------------------------------------


def test_plural_is_plural_aware() -> None:
    assert [plural(n, "job") for n in (0, 1, 2, 1500)] == [
        "0 jobs",
        "1 job",
        "2 jobs",
        "1,500 jobs",
    ]
    assert plural(1, "batch") == "1 batch" and plural(3, "batch") == "3 batches"
    assert plural(2, "entry") == "2 entries" and plural(2, "idle Worker") == "2 idle Workers"


ONE_PLURAL = re.compile(r"\b1 (?:[a-z]+ )?(?:jobs|batches|entries|Workers|notifications)\b")


async def test_replies_count_in_words(redis: aioredis.Redis, prefix: str, node: NodeCall) -> None:
    await node("fail", queue="a", count=2, reason="poison")
    d = dispatcher_for(redis, prefix)
    texts = [
        render_text(r.view())
        for r in [
            await say(d, 'quarantine a --failed-matching "poison #0"', confirmed=False),
            await say(d, 'quarantine a --failed-matching "poison #0"'),
            await say(d, "dlq list a"),
            await say(d, "dlq replay a", confirmed=False),
            await say(d, "dlq replay a"),
            await say(d, "retry a --count 1"),
            await say(d, "pause a"),
            await say(d, "pause a"),
            await say(d, "resume a"),
            await say(d, "resume a"),
            await say(d, "budget"),
        ]
    ]
    for text in texts:
        assert "(s)" not in text and "these 1" not in text and "(it already was)" not in text
        assert not ONE_PLURAL.search(text), text
    joined = "\n".join(texts)
    assert "would move 1 failed job matching" in joined
    assert "replay would put this job back into 'a'" in joined
    assert "1 job replayed from 'a-dlq' into 'a'" in joined
    assert "'a' was already paused" in joined and "'a' was not paused; nothing to resume" in joined
    bulk = BulkQuarantineReply.model_validate(
        {
            "result": {
                "queue": "a",
                "dlq": "a-dlq",
                "pattern": "x",
                "scanned": 1,
                "matched": 1,
                "moved": [{"jobId": "1", "moved": True, "outcome": "moved:failed"}],
                "skipped": [],
                "batches": 1,
            }
        }
    )
    assert "1 failed job matching /x/ moved from 'a' to 'a-dlq' (1 failed job read, 1 batch)" in (
        render_text(bulk.view())
    )
    assert render_text(PauseReply(queue="a", paused=False, was_paused=True).view()).endswith(
        "'a' resumed"
    )


# -- 11. the drain cron says why it is off ----------------------------------------------


async def test_cron_status_after_cron_pause_says_paused(redis: aioredis.Redis, prefix: str) -> None:
    d = dispatcher_for(redis, prefix, drain_url="http://127.0.0.1:9", cron_secret="t")
    await say(d, "mode cron")
    await say(d, "cron pause")
    status = await say(d, "cron status")
    assert render_text(status.view()).startswith(
        "|| drain cron off (paused: cron resume drains again), every"
    )
    doc = status.data()
    assert doc["paused"] is True and doc["enabled"] is False
    assert doc["offBecause"] == ["paused: cron resume drains again"]
    await say(d, "cron resume")
    assert (await say(d, "cron status")).data()["offBecause"] == []


async def test_mode_cron_preview_says_the_cron_stays_off_without_drain_url(
    redis: aioredis.Redis, prefix: str
) -> None:
    d = dispatcher_for(redis, prefix)
    asked = await say(d, "mode cron --every 5m", confirmed=False)
    assert isinstance(asked, ConfirmationNeeded)
    assert "drain cron  stays off while DRAIN_URL is unset (then every 5m)" in render_text(
        asked.view()
    )
    done = await say(d, *[shlex.join(asked.words)])
    text = render_text(done.view())
    assert "drain cron stays off while DRAIN_URL is unset" in text
    status = await say(d, "cron status")
    assert "DRAIN_URL is not set" in status.data()["offBecause"]
