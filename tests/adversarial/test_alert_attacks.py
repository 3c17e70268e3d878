"""Issue 8, items 1 to 6, against the real `queueops serve` over real sockets: split and
chunked bodies, oversize, deep nesting, bad times and timestamps, poison entries ahead
of good ones, SIGKILL in the middle of opening an incident, the backlog bound, and
channel names that collide."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from alert_helpers import chunked, raw_request, request_head, stored_event_json, wait_until
from served_bot import ALERT_TOKEN, ServedBot
from slack_helpers import sign

FIRING = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "alertmanager" / "firing.json").read_text()
)["body"]
PLAIN_NAME = "inc-20261123-0639-queuebacklog-batch-jobs"


def firing(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(FIRING))
    body.update(changes)
    return body


async def post(
    bot: ServedBot, body: Any, path: str = "/alerts/alertmanager", headers: Any = None
) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            bot.url + path,
            data=data,
            headers=headers
            or {"Authorization": f"Bearer {ALERT_TOKEN}", "Content-Type": "application/json"},
        ) as resp,
    ):
        return resp.status, json.loads(await resp.text() or "{}")


async def raw(bot: ServedBot, head: str, pieces: list[bytes], pause: float) -> int:
    """Head and body in separate writes with pauses between; the status code."""
    return (await raw_request("127.0.0.1", bot.port, head, pieces, pause=pause))[0]


def head(extra: str) -> str:
    return request_head("/alerts/alertmanager", ALERT_TOKEN, extra)


def old_entry(title: str, starts_at: str, group: str) -> str:
    return stored_event_json(title, starts_at, group, source="alertmanager", queues=["batch-jobs"])


async def test_split_chunked_oversize_deep_and_badly_timed_bodies(
    served: ServedBot, redis: aioredis.Redis, tally: Counter[str]
) -> None:
    rng = random.Random(8)
    stream = f"{served.state_prefix}:alerts"
    sent = 0
    for n in range(12):  # 64 to 160 KiB, cut at random places, 2 to 6 writes
        body = firing(groupKey=f"split-{n}")
        body["commonAnnotations"]["description"] = "d" * rng.randint(64, 160) * 1024
        data = json.dumps(body).encode()
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 5)))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        if n % 2:
            status = await raw(
                served, head("Transfer-Encoding: chunked\r\n"), chunked(data, 40_000), 0.02
            )
        else:
            status = await raw(served, head(f"Content-Length: {len(data)}\r\n"), pieces, 0.02)
        assert status == 200, n
        sent += 1
    tally["accepted"] += sent
    assert await redis.xlen(stream) == sent

    bad: list[tuple[int, bytes | dict[str, Any], str]] = [
        (413, b"[" + b" " * 300_000 + b"]", "chunked"),
        (413, b"[" + b" " * 300_000 + b"]", "length"),
        (400, b"[" * 3000 + b"]" * 3000, "length"),
        (400, b'{"version":"4","alerts":' + b'{"a":' * 3000 + b"1" + b"}" * 3001, "length"),
        (400, b"{not json", "length"),
        (400, b"\xff\xfe", "length"),
    ]
    for starts_at in (
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+01:00",
        "2026-11-23T06:39:12",
        "2026-13-45T99:00:00Z",
        "yesterday",
        "",
        "1969-12-31T23:59:59Z",
    ):
        body = firing()
        body["alerts"][0]["startsAt"] = starts_at
        bad.append((400, body, "length"))
    mixed = firing()
    mixed["alerts"].append({**mixed["alerts"][0], "startsAt": "2026-11-23T06:40:00"})
    bad.append((400, mixed, "length"))
    for expected, payload, framing in bad:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        if framing == "chunked":
            status = await raw(
                served, head("Transfer-Encoding: chunked\r\n"), chunked(data, 65536), 0.01
            )
        else:
            status = (await post(served, data))[0]
        assert status == expected, (expected, status, data[:80])
    tally["bad_inputs"] += len(bad)

    slack_body = "command=%2Fqueue&text=help"
    stamps = ["abc", "", "-1", "1e9", "12 34", "٣٤٥", "9" * 40, str(int(time.time()) - 3600)]
    for stamp in stamps:
        headers = {**sign(slack_body), "X-Slack-Request-Timestamp": stamp}
        status, _ = await post(served, slack_body.encode(), "/slack/events", headers)
        assert status == 401, (stamp, status)
    tally["bad_inputs"] += len(stamps)
    assert await redis.xlen(stream) == sent
    assert "Traceback" not in served.log()
    await served.slack.wait_for("pins.add", sent, within=20)
    tally["handled"] += len(served.slack.of("pins.add"))


async def test_poison_entries_ahead_of_good_ones_are_parked_and_the_good_ones_handled(
    served: ServedBot, redis: aioredis.Redis, tally: Counter[str]
) -> None:
    stream = f"{served.state_prefix}:alerts"
    poison = [old_entry(f"P{i}", "9999-12-31T23:59:59-14:00", f"poison-{i}") for i in range(150)]
    poison.append(old_entry("Year1", "0001-01-01T00:00:00+01:00", "poison-y1"))
    good = [old_entry(f"Good{i}", "2026-11-23T07:00:00Z", f"good-{i}") for i in range(5)]
    async with redis.pipeline(transaction=False) as pipe:
        for event in [*poison, *good]:
            pipe.xadd(stream, {"event": event})
        await pipe.execute()
    # A process read them all and died (SIGKILL: nothing acked).
    await redis.xreadgroup("incidents", "killed-host-1", {stream: ">"}, count=1000)
    await served.kill()
    await served.start()
    tally["faults"] += 1
    tally["bad_inputs"] += len(poison)
    tally["accepted"] += len(good)
    await served.slack.wait_for("pins.add", len(good), within=15)
    names = sorted(c.body["name"] for c in served.slack.of("conversations.create"))
    assert names == [f"inc-20261123-0700-good{i}-batch-jobs" for i in range(5)]
    tally["handled"] += len(good)
    await wait_until(lambda: _is(redis.xlen(f"{stream}:dead"), len(poison)))
    tally["parked"] += len(poison)
    assert await _pending_is(redis, stream, 0)

    async with aiohttp.ClientSession() as http:
        async with http.get(served.url + "/readyz") as resp:
            ready = await resp.json()
        async with http.get(served.url + "/metrics") as resp:
            metrics = await resp.text()
    assert ready["alerts"] == f"{len(poison)} dead-lettered in {stream}:dead", ready
    assert f"queueops_alerts_dead_lettered {float(len(poison))}" in metrics


async def _is(value: Awaitable[Any], expected: Any) -> bool:
    return bool(await value == expected)


async def test_sigkill_while_slack_is_slow_then_a_restart_finishes_the_incident(
    served: ServedBot, redis: aioredis.Redis, tally: Counter[str]
) -> None:
    served.slack.hold("chat.postMessage")  # Slack hangs on the status message
    assert (await post(served, firing()))[0] == 200
    tally["accepted"] += 1
    await served.slack.wait_for("chat.postMessage:held", within=10)
    await served.kill()  # in the middle of chat.postMessage, holding the incident's lock
    tally["faults"] += 1
    served.slack.release("chat.postMessage")
    await served.start()  # at once: the dead process's lock has not expired
    pins = await served.slack.wait_for("pins.add", within=20)
    [channel] = {p.body["channel"] for p in pins}
    posts = [c for c in served.slack.of("chat.postMessage") if c.body.get("blocks")]
    assert posts[-1].body["channel"] == channel
    assert len(served.slack.of("conversations.create")) == 1
    assert len(served.slack.of("conversations.setTopic")) == 1
    stream = f"{served.state_prefix}:alerts"
    await wait_until(lambda: _pending_is(redis, stream, 0))
    tally["handled"] += 1


async def _pending_is(redis: aioredis.Redis, stream: str, n: int) -> bool:
    return int((await redis.xpending(stream, "incidents"))["pending"]) == n


async def test_over_the_backlog_bound_intake_answers_503_and_nothing_is_trimmed(
    served: ServedBot, redis: aioredis.Redis, tally: Counter[str]
) -> None:
    stream = f"{served.state_prefix}:alerts"
    async with redis.pipeline(transaction=False) as pipe:  # Slack down for a long night
        for n in range(9_990):
            pipe.xadd(stream, {"event": old_entry("Backlog", "2026-11-23T07:00:00Z", f"b{n}")})
        ids = await pipe.execute()
    await redis.xreadgroup("incidents", "slack-is-down", {stream: ">"}, count=10_000)
    tally["faults"] += 1
    served.slack.hold("conversations.create")  # and the worker is stuck on the first one
    statuses: Counter[int] = Counter()
    for n in range(30):
        statuses[(await post(served, firing(groupKey=f"late-{n}")))[0]] += 1
    assert statuses == {200: 10, 503: 20}
    tally["accepted"] += 10
    tally["bad_inputs"] += 20  # refused with 503: Alertmanager sends them again
    assert await redis.xlen(stream) == 10_000  # every accepted entry is still there
    await redis.xack(stream, "incidents", *ids)  # Slack is back: those are handled
    served.slack.release("conversations.create")
    assert (await post(served, firing(groupKey="after")))[0] == 200
    tally["accepted"] += 1
    assert await redis.xlen(stream) < 100  # handled entries trimmed, the rest kept
    await served.slack.wait_for("pins.add", 11, within=20)
    tally["handled"] += 11


async def test_colliding_names_never_share_a_channel_nor_take_a_persons(
    served: ServedBot, redis: aioredis.Redis, tally: Counter[str]
) -> None:
    served.slack.add_persons_channel(PLAIN_NAME)
    tally["faults"] += 1
    for n in range(3):  # same alertname, queue and start minute; three groups
        assert (await post(served, firing(groupKey=f'{{}}:{{alertname="QueueBacklog",n="{n}"}}')))[
            0
        ] == 200
    for n, title in enumerate(["🔥🔥🔥", "Очередь застряла", "!!!", "キュー"]):
        body = {"title": title, "fingerprint": f"odd-{n}", "startsAt": "2026-11-23T07:00:00Z"}
        assert (await post(served, body, "/alerts/generic"))[0] == 200
    tally["accepted"] += 7
    tally["bad_inputs"] += 4
    pins = await served.slack.wait_for("pins.add", 7, within=20)
    channels = {p.body["channel"] for p in pins}
    assert len(channels) == 7 and "CP0000" not in channels
    ours = [c for c in served.slack.channels.values() if c["creator"] == "UBOT"]
    assert len(ours) == 7
    assert all(len(c["name"]) <= 80 and c["name"].startswith("inc-2026112") for c in ours)
    tally["handled"] += 7
