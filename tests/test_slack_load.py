"""Slack under load (issue 9, goal 6): what made 50 concurrent `/queue snapshot` slow, each
held down here. The timings themselves are measured by bench/slack_ack.py, not asserted."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import redis.asyncio as aioredis
from slack_bolt.async_app import AsyncApp
from slack_helpers import MakeBot, press, sign, slash, text_of
from slack_sdk.models.basic_objects import JsonObject
from slack_sdk.models.blocks import HeaderBlock, SectionBlock
from slack_sdk.models.blocks.basic_components import MarkdownTextObject, PlainTextObject
from slack_sdk.webhook.async_client import AsyncWebhookClient
from slack_stub import SlackStub

from bot.config import load_settings
from bot.http_app import DISPATCHER, freeze_startup_heap, serving_app
from bot.queues.service import QueueService
from bot.redis_client import POOL_SIZE, make_redis
from bot.slack.app import READS_AT_ONCE
from bot.slack.blocks import as_dicts, confirm_buttons, render_blocks
from bot.slack.slash import SlashCommands
from commands.view import Chart, Code, Fields, Heading, Mark, Note, Row, Table, Text


def test_block_json_is_what_slack_sdk_writes() -> None:
    view = [
        Heading(text="batch-jobs " * 30),
        Text(text="plain <text> & more"),
        Note(mark=Mark.WARN, text="careful"),
        Fields(items=[("next to run", "render x3"), ("recent failures", "2x boom")]),
        Table(columns=["queue", "waiting"], rows=[Row(mark=Mark.HEALTHY, cells=["q", "3"])]),
        Code(text="{}"),
        Chart(title="depth", series={"q": [(1, 2)]}),
        *[Fields(items=[("k", str(i))]) for i in range(60)],
    ]
    blocks = [
        *render_blocks(view),
        confirm_buttons("t0k", "quarantine q --failed-matching x"),
        SectionBlock(block_id="b1", text=MarkdownTextObject(text="with an id")),
        SectionBlock(text=MarkdownTextObject(text="verbatim", verbatim=True)),
        HeaderBlock(text=PlainTextObject(text="no emoji", emoji=False)),
    ]
    assert as_dicts(blocks) == [b.to_dict() for b in blocks]


def test_the_blocks_a_reply_is_made_of_skip_slack_sdks_reflection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sections (most of every reply: text, notes, fields, tables), headers and contexts are
    written directly; slack_sdk's to_dict cost about 0.1 ms a block on the event loop."""
    view = [
        Heading(text="batch-jobs"),
        Text(text="plain"),
        Note(mark=Mark.WARN, text="careful"),
        Fields(items=[("next to run", "render x3")]),
        Table(columns=["queue", "waiting"], rows=[Row(mark=Mark.HEALTHY, cells=["q", "3"])]),
        Code(text="{}"),
        Chart(title="depth", series={"q": [(1, 2)]}),
    ]
    blocks = render_blocks(view)
    expected = [b.to_dict() for b in blocks]

    def refused(self: JsonObject) -> dict[str, Any]:
        raise AssertionError(f"to_dict called on {type(self).__name__}")

    monkeypatch.setattr(JsonObject, "to_dict", refused)
    assert as_dicts(blocks) == expected


async def test_a_burst_of_commands_shares_a_bounded_pool(
    redis: aioredis.Redis, redis_url: str
) -> None:
    name = f"qo-pool-{uuid.uuid4().hex[:8]}"
    client = make_redis(load_settings(redis_url=redis_url), client_name=name)
    try:
        await asyncio.gather(*(client.ping() for _ in range(50)))
        opened = [c for c in await redis.client_list() if c["name"] == name]
        assert 1 <= len(opened) <= POOL_SIZE
    finally:
        await client.aclose()


async def test_replies_go_over_one_shared_http_session(
    make_bot: MakeBot, slack: SlackStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions: list[Any] = []
    original = AsyncWebhookClient.__init__

    def recording(self: AsyncWebhookClient, *args: Any, **kwargs: Any) -> None:
        sessions.append(kwargs.get("session"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(AsyncWebhookClient, "__init__", recording)
    bot = await make_bot()
    for n in range(3):
        await slash(bot, slack, "help", reply_to=f"h{n}")
        await slack.wait_for(f"respond:h{n}")
    assert len(sessions) == 3 and sessions[0] is not None
    assert all(s is sessions[0] for s in sessions)


async def test_reads_take_turns_and_changes_do_not_wait(
    make_bot: MakeBot, slack: SlackStub, service: QueueService
) -> None:
    await service.store.bullmq(service.ref("q")).add("pdf", {})
    bot = await make_bot()
    dispatcher = bot.server.app[DISPATCHER]
    running = {"now": 0, "most": 0}
    release = asyncio.Event()
    real_run = dispatcher.run

    async def held(words: Any, **kwargs: Any) -> Any:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        if words[0] == "snapshot":
            await release.wait()
        try:
            return await real_run(words, **kwargs)
        finally:
            running["now"] -= 1

    dispatcher.run = held  # type: ignore[method-assign]
    for n in range(READS_AT_ONCE + 3):
        await slash(bot, slack, "snapshot q", reply_to=f"s{n}")
    # The reads that got a turn are held; a change still runs and replies.
    await slash(bot, slack, "pause q", user="UOPS", reply_to="p")
    await slack.wait_for("respond:p")
    assert running["most"] == READS_AT_ONCE + 1  # the held reads, and the pause
    release.set()
    for n in range(READS_AT_ONCE + 3):
        await slack.wait_for(f"respond:s{n}")


async def test_slash_commands_are_answered_before_bolt_and_buttons_by_bolt(
    make_bot: MakeBot, slack: SlackStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatched: list[str] = []
    real_dispatch = AsyncApp.async_dispatch

    async def counting(self: AsyncApp, req: Any) -> Any:
        dispatched.append(req.body.get("type") or req.body.get("command", "?"))
        return await real_dispatch(self, req)

    monkeypatch.setattr(AsyncApp, "async_dispatch", counting)
    bot = await make_bot()
    resp = await slash(bot, slack, "help")
    assert resp.status == 200 and await resp.text() == ""  # the ack: Slack shows nothing
    assert "snapshot [QUEUE ...]" in text_of((await slack.wait_for("respond:r1"))[0].body)
    body = urlencode({"command": "/queue", "text": "help", "response_url": slack.response_url()})
    now = int(time.time())
    refused = [
        await bot.post("/slack/events", data=body, headers=headers)
        for headers in (
            {"Content-Type": "application/x-www-form-urlencoded"},  # unsigned
            sign(body, secret="wrong"),
            sign(body, at=now - 6 * 60),  # Slack's window is 5 minutes, either way
            sign(body, at=now + 6 * 60),
        )
    ]
    assert [r.status for r in refused] == [401] * 4 and dispatched == []
    assert await refused[0].json() == {"error": "invalid request"}  # as Bolt answers
    await press(bot, slack, "queueops_cancel", "no-such-token", user="UOPS", reply_to="b")
    assert "expired" in text_of((await slack.wait_for("respond:b"))[0].body)
    assert dispatched == ["block_actions"]


async def test_a_command_starts_after_the_acks_pending_when_it_came(
    make_bot: MakeBot, slack: SlackStub, service: QueueService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request still being answered (here: its body arriving slowly) holds back the work of
    a command accepted meanwhile, which is acked at once and counted as in flight."""
    await service.store.bullmq(service.ref("q")).add("pdf", {})
    answering = {"now": 0}
    real_answering = SlashCommands.answering

    @contextlib.contextmanager
    def counted(self: SlashCommands) -> Iterator[None]:
        answering["now"] += 1
        try:
            with real_answering(self):
                yield
        finally:
            answering["now"] -= 1

    monkeypatch.setattr(SlashCommands, "answering", counted)
    bot = await make_bot()
    held = urlencode(
        {
            "command": "/queue",
            "text": "snapshot q",
            "user_id": "UHELD",
            "channel_id": "C1",
            "response_url": slack.response_url("held"),
        }
    ).encode()
    reader, writer = await asyncio.open_connection(bot.server.host, bot.server.port)
    head = "".join(f"{k}: {v}\r\n" for k, v in sign(held.decode()).items())
    head += f"Host: x\r\nContent-Length: {len(held)}\r\n"
    writer.write(f"POST /slack/events HTTP/1.1\r\n{head}\r\n".encode() + held[:20])
    await writer.drain()
    for _ in range(200):  # until the server is answering it
        if answering["now"]:
            break
        await asyncio.sleep(0.01)
    assert answering["now"] == 1

    acked = await slash(bot, slack, "snapshot q", reply_to="fast")
    assert acked.status == 200
    with pytest.raises(TimeoutError):
        await slack.wait_for("respond:fast", within=0.3)
    assert bot.server.app[DISPATCHER].in_flight == 1  # a clean shutdown would wait for it

    writer.write(held[20:])
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    writer.close()
    await slack.wait_for("respond:fast")
    await slack.wait_for("respond:held")


async def test_a_command_starts_once_requests_stopped_arriving(
    make_bot: MakeBot, slack: SlackStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rest of a burst is acked before the work of its first command starts: while
    requests keep arriving (more often than quiet_s), the command waits."""
    monkeypatch.setattr(SlashCommands, "quiet_s", 0.5)
    bot = await make_bot()
    assert (await slash(bot, slack, "help", reply_to="first")).status == 200
    for _ in range(5):  # arrivals 0.05 s apart, 0.25 s of them (the bound is 1 s)
        assert (await bot.post("/slack/events", data="command=%2Fqueue")).status == 401
        assert not slack.of("respond:first")
        await asyncio.sleep(0.05)
    await slack.wait_for("respond:first")


async def test_commands_start_in_the_order_they_came(
    make_bot: MakeBot, slack: SlackStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst's waits end together; the commands still start in the order Slack sent them
    (one person's `pause` then `resume`), and wait on one read of the operators' user group
    (with a cold cache each used to read it, and the answers came back in any order)."""
    monkeypatch.setattr(SlashCommands, "quiet_s", 0.2)
    bot = await make_bot()
    dispatcher = bot.server.app[DISPATCHER]
    started: list[str] = []
    real_run = dispatcher.run

    async def recorded(words: Any, **kwargs: Any) -> Any:
        started.append(kwargs["actor"])
        return await real_run(words, **kwargs)

    dispatcher.run = recorded  # type: ignore[method-assign]
    users = [f"U{n}" for n in range(8)]
    for n, user in enumerate(users):
        assert (await slash(bot, slack, "help", user=user, reply_to=f"h{n}")).status == 200
    for n in range(len(users)):
        await slack.wait_for(f"respond:h{n}")
    assert started == [f"slack:{u}" for u in users]
    assert len(slack.of("usergroups.users.list")) == 1  # one read of S0OPS for all eight


async def test_serve_freezes_what_start_up_built(redis_url: str) -> None:
    """A full collection walked every object start-up built (50-90 ms with the loop stopped,
    seen in the middle of a burst); serve collects once and freezes them after start-up."""
    app = await serving_app(load_settings(redis_url=redis_url))
    assert app.on_startup[-1] is freeze_startup_heap
    frozen = gc.get_freeze_count()
    try:
        await freeze_startup_heap(app)
        assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()  # the rest of the test session collects as before
        await app.cleanup()
