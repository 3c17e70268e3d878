"""A user's regex cannot freeze queueops: `(a+)+$` against forty `a`s and a `!` (hours of
backtracking for Python's `re`) returns at once, `/healthz` answers meanwhile, and what RE2
cannot run, or what runs over the time bound, is one clear line with nothing moved."""

from __future__ import annotations

import asyncio
import os
import time
from urllib.parse import urlencode

import pytest
from aiohttp import ClientSession, ClientTimeout
from cli_runner import run_cli
from conftest import REDIS_URL, NodeCall
from served_bot import ServedBot
from slack_helpers import MakeBot, sign, slash, text_of
from slack_stub import SlackStub

import bot.patterns
from bot.patterns import PatternTooSlow, compile_user_pattern
from bot.queues.bullmq.quarantine import BulkMoveStopped
from bot.queues.service import QueueService

EVIL = "(a+)+$"
VICTIM = "a" * 40 + "!"


async def test_evil_pattern_returns_at_once_and_healthz_answers_meanwhile(
    make_bot: MakeBot, slack: SlackStub, node: NodeCall
) -> None:
    await node("fail", queue="jobs", count=3, reason=VICTIM)
    bot = await make_bot()
    started = time.monotonic()
    await slash(bot, slack, f'quarantine jobs --failed-matching "{EVIL}"', user="UOPS")
    health = []
    while not slack.of("respond:r1"):
        resp = await asyncio.wait_for(bot.get("/healthz"), 1.0)
        health.append(resp.status)
        await asyncio.sleep(0.01)
    assert time.monotonic() - started < 2.0
    assert health and set(health) == {200}
    [preview] = slack.of("respond:r1")
    assert "no failed job in 'jobs' matches" in text_of(preview.body)


async def test_real_serve_stays_responsive_under_the_evil_pattern(
    served: ServedBot, node: NodeCall
) -> None:
    await node("fail", queue="batch-jobs", count=3, reason=VICTIM)
    await served.stop()  # again with an operator, so the pattern really runs
    served.env["QUEUEOPS_ROLES"] = "operator=UOPS"
    await served.start()
    body = urlencode(
        {
            "team_id": "T0001",
            "channel_id": "C0OPS",
            "user_id": "UOPS",
            "user_name": "ops",
            "command": "/queue",
            "text": f'quarantine batch-jobs --failed-matching "{EVIL}"',
            "response_url": served.slack.response_url("evil"),
            "trigger_id": "1.2.3",
        }
    )
    health = []
    async with ClientSession(timeout=ClientTimeout(total=1.0)) as http:
        started = time.monotonic()
        async with http.post(f"{served.url}/slack/events", data=body, headers=sign(body)) as r:
            assert r.status == 200
        while not served.slack.of("respond:evil") and time.monotonic() - started < 2.0:
            async with http.get(f"{served.url}/healthz") as resp:  # 1 s timeout: frozen fails
                health.append(resp.status)
            await asyncio.sleep(0.02)
    replies = served.slack.of("respond:evil")
    assert replies, "no reply within 2 s"
    assert "no failed job in 'batch-jobs' matches" in text_of(replies[0].body)
    assert health and set(health) == {200}


async def _cli(*args: str, prefix: str) -> tuple[int, str, str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("QUEUEOPS_")},
        "REDIS_URL": REDIS_URL,
        "QUEUEOPS_PREFIX": prefix,
        "QUEUEOPS_STATE_PREFIX": f"{prefix}-state",
        "QUEUEOPS_QUEUES": "jobs",
    }
    return await run_cli(args, env, within=10)


async def test_cli_with_the_evil_pattern_returns_within_two_seconds(
    node: NodeCall, prefix: str
) -> None:
    await node("fail", queue="jobs", count=3, reason=VICTIM)
    started = time.monotonic()
    code, out, err = await _cli("quarantine", "jobs", "--failed-matching", EVIL, prefix=prefix)
    assert time.monotonic() - started < 2.0 + 1.0  # + the interpreter's start
    assert code == 0, err
    assert "no failed job in 'jobs' matches" in out


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        (r"(a)\1", "invalid escape sequence: \\1; backreferences and lookaround are not"),
        ("(?=a)b", "invalid perl operator: (?=; backreferences and lookaround are not"),
        ("[x", "is not a valid regex: missing ]: [x"),
    ],
)
async def test_a_pattern_re2_cannot_run_is_one_line(pattern: str, says: str, prefix: str) -> None:
    code, out, err = await _cli("quarantine", "jobs", "--failed-matching", pattern, prefix=prefix)
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("queueops: --failed-matching: ") and says in line


async def test_over_the_time_bound_is_pattern_too_slow_and_nothing_moves(
    service: QueueService, node: NodeCall, monkeypatch: pytest.MonkeyPatch
) -> None:
    await node("fail", queue="jobs", count=3, reason=VICTIM)
    monkeypatch.setattr(bot.patterns, "MATCH_BOUND_S", -1.0)  # every batch is over the bound
    with pytest.raises(BulkMoveStopped) as stopped:
        await service.quarantine_matching(
            "jobs", compile_user_pattern("a+"), limit=10, reason="r", actor="t"
        )
    assert isinstance(stopped.value.cause, PatternTooSlow)
    assert str(stopped.value.cause).startswith("pattern too slow: /a+/ took over")
    assert not stopped.value.partial.moved
    with pytest.raises(PatternTooSlow, match=r"^pattern too slow"):
        await service.bullmq.find_failed_matching("jobs", compile_user_pattern("a+"), limit=10)
    counts = await node("counts", queues=["jobs", "jobs-dlq"])
    assert (counts["jobs"]["failed"], counts["jobs-dlq"]["failed"]) == (3, 0)
