"""How queues are addressed, against the real npm bullmq 5: prefixes holding `:`, dotted
names, several prefixes at once (and each one's DLQ), QUEUEOPS_QUEUES globs, queues made
after start, ambiguous short names, and what discovery finds and what it costs.

Node writes, queueops reads (the `queueops` CLI in a subprocess where practical, else
QueueService), and Node checks what queueops wrote. Every prefix here starts with the
test's random `prefix` (`<p>:notifications`, `<p>.other`), so the fixture's cleanup takes
them all and tests sharing one Redis do not see each other's queues.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
import redis.asyncio as aioredis
from cli_runner import Run, run_cli
from conftest import REDIS_URL, NodeCall

from bot.errors import NotFound
from bot.queues.keys import COUNT_STATES, QueueRef
from bot.queues.service import QueueService


async def queueops(p: str, *args: str, **env: str) -> Run:
    """`queueops ARGS` with only the QUEUEOPS_* variables given (none inherited) and
    queueops' own state (the audit stream) under `<p>-state`, cleaned with the prefix."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEOPS_")}
    full_env = {**inherited, "REDIS_URL": REDIS_URL, "QUEUEOPS_STATE_PREFIX": f"{p}-state", **env}
    run = Run(*await run_cli(args, full_env))
    assert "Traceback" not in run.err, run.err
    return run


def by_full(doc: dict[str, Any], under: str) -> dict[str, dict[str, Any]]:
    """`snapshot --json`'s queues whose prefix starts with `under`, by full name."""
    return {f"{q['prefix']}:{q['name']}": q for q in doc["queues"] if q["prefix"].startswith(under)}


def jobs(n: int, name: str = "work") -> list[dict[str, Any]]:
    return [{"name": name, "data": {"i": i}} for i in range(n)]


# -- 1. a prefix holding ':' ------------------------------------------------------------


async def test_prefix_with_colon_beside_its_parent_prefix(prefix: str, node: NodeCall) -> None:
    notif = f"{prefix}:notifications"
    await asyncio.gather(
        node("add", queue="events", jobs=[*jobs(3), {"name": "later", "opts": {"delay": 60_000}}]),
        node("fail", prefix=notif, queue="email", count=2, reason="smtp down"),
    )
    run = await queueops(prefix, "snapshot", "--json", QUEUEOPS_PREFIX=f"{prefix},{notif}")
    assert run.code == 0, run.err
    got = by_full(run.json(), prefix)
    # Exactly these two: `<p>:notifications:email` is queue `email` under `<p>:notifications`,
    # not a queue `notifications:email` (BullMQ forbids ':' in names) nor one under `<p>`.
    assert set(got) == {f"{prefix}:events", f"{notif}:email"}
    events, email = got[f"{prefix}:events"], got[f"{notif}:email"]
    assert (events["prefix"], events["name"]) == (prefix, "events")
    assert (email["prefix"], email["name"]) == (notif, "email")

    npm_events, npm_email = await asyncio.gather(
        node("counts", queues=["events"]), node("counts", prefix=notif, queues=["email"])
    )
    assert events["counts"] == npm_events["events"]
    assert email["counts"] == npm_email["email"]
    assert list(email["counts"]) == list(COUNT_STATES)
    assert events["counts"]["waiting"] == 3 and events["counts"]["delayed"] == 1
    assert email["counts"]["failed"] == 2


# -- 2. dotted names --------------------------------------------------------------------


async def test_dotted_queue_names_beside_plain_ones(prefix: str, node: NodeCall) -> None:
    dotted = "super-admin.bulk-job"
    other = f"{prefix}.other"  # a dotted prefix too: not `<p>`, not under it
    await asyncio.gather(
        node("add", queue=dotted, jobs=jobs(2, "bulk")),
        node("add", queue="super-admin", jobs=jobs(1)),
        node("add", queue="events", jobs=jobs(4)),
        node("add", prefix=other, queue="bulk-job", jobs=jobs(5)),
    )
    npm = await node("counts", queues=[dotted, "super-admin", "events"])

    run = await queueops(prefix, "snapshot", "--json", QUEUEOPS_PREFIX=prefix)
    assert run.code == 0, run.err
    got = {q["name"]: q for q in run.json()["queues"]}
    assert set(got) == {dotted, "super-admin", "events"}  # `<p>.other` is another prefix
    for name in got:
        assert got[name]["prefix"] == prefix
        assert got[name]["counts"] == npm[name], name

    # Named by short name and by full name, and listed in QUEUEOPS_QUEUES.
    named = await queueops(
        prefix, "snapshot", dotted, f"{prefix}:{dotted}", "--json", QUEUEOPS_PREFIX=prefix
    )
    assert named.code == 0, named.err
    assert named.json()["queues"]
    for q in named.json()["queues"]:
        assert (q["prefix"], q["name"], q["counts"]) == (prefix, dotted, npm[dotted])
    listed = await queueops(
        prefix, "snapshot", "--json", QUEUEOPS_PREFIX=prefix, QUEUEOPS_QUEUES=f"{dotted},events"
    )
    assert [q["name"] for q in listed.json()["queues"]] == [dotted, "events"]

    both = await queueops(
        prefix,
        "snapshot",
        "--json",
        QUEUEOPS_PREFIX=f"{prefix},{other}",
        QUEUEOPS_QUEUES="bulk-job",
    )
    assert both.code == 0, both.err
    [q] = both.json()["queues"]
    assert (q["prefix"], q["name"], q["counts"]["waiting"]) == (other, "bulk-job", 5)


# -- 3. two prefixes at once, and the DLQ ------------------------------------------------


async def test_quarantine_and_replay_by_full_name_under_a_colon_prefix(
    prefix: str, node: NodeCall
) -> None:
    notif = f"{prefix}:notifications"
    env = {"QUEUEOPS_PREFIX": f"{prefix},{notif}"}
    full = f"{notif}:email"
    ids, _ = await asyncio.gather(
        node("fail", prefix=notif, queue="email", count=2, reason="bounce"),
        node("fail", queue="email", count=1, reason="other team"),
    )
    job_id = ids["ids"][0]

    run = await queueops(prefix, "quarantine", full, job_id, "--reason", "poison", **env)
    assert run.code == 0, run.err
    moved, stays = await asyncio.gather(
        node("where", prefix=notif, queue="email", ids=[job_id]),
        node("where", queue="email", ids=[job_id]),
    )
    # The DLQ is `email-dlq` under the queue's own prefix, `<p>:notifications`.
    assert moved == {job_id: {"source": None, "dlq": "failed"}}
    # `<p>:email` (the same short name under the other prefix) was not touched.
    assert stays == {job_id: {"source": "failed", "dlq": None}}

    listing = await queueops(prefix, "dlq", "list", full, "--json", **env)
    assert listing.code == 0, listing.err
    [entry] = listing.json()["listing"]["entries"]
    assert entry["jobId"] == job_id and entry["quarantineReason"] == "poison"
    assert entry["originalFailedReason"].startswith("bounce")

    replay = await queueops(prefix, "dlq", "replay", full, "--json", **env)
    assert replay.code == 0, replay.err
    assert [j["jobId"] for j in replay.json()["result"]["replayed"]] == [job_id]
    back = await node("job", prefix=notif, queue="email", id=job_id)
    assert back is not None and back["state"] == "waiting"
    assert back["data"] == {"n": 0, "payload": {"text": "payload 0", "list": [0, 1]}}


# -- 4. globs ---------------------------------------------------------------------------


async def test_globs_expand_to_the_queues_that_exist(prefix: str, node: NodeCall) -> None:
    other = f"{prefix}.other"
    outside = f"{prefix}-outside"  # exists, but is not in QUEUEOPS_PREFIX
    await asyncio.gather(
        node("add", queue="ocr-a", jobs=jobs(1)),
        node("add", queue="ocr-b", jobs=jobs(2)),
        node("add", queue="billing-y", jobs=jobs(1)),
        node("add", queue="shipping", jobs=jobs(1)),
        node("add", prefix=other, queue="billing-x", jobs=jobs(3)),
        node("add", prefix=other, queue="ocr-z", jobs=jobs(1)),
        node("add", prefix=outside, queue="billing-q", jobs=jobs(1)),
    )
    env = {"QUEUEOPS_PREFIX": f"{prefix},{other}", "QUEUEOPS_QUEUES": f"{prefix}:ocr-*,billing-*"}
    run = await queueops(prefix, "snapshot", "--json", **env)
    assert run.code == 0, run.err
    got = {f"{q['prefix']}:{q['name']}": q["counts"]["waiting"] for q in run.json()["queues"]}
    # The full-name glob only under `<p>` (not `<p>.other:ocr-z`); the short-name glob under
    # every prefix in scope (not `<p>-outside`).
    assert got == {
        f"{prefix}:ocr-a": 1,
        f"{prefix}:ocr-b": 2,
        f"{prefix}:billing-y": 1,
        f"{other}:billing-x": 3,
    }

    # The same expansion in-process, and a glob that matches nothing is no queue at all.
    service = QueueService(
        aioredis.Redis.from_url(REDIS_URL, decode_responses=True),
        prefixes=[prefix, other],
        queues=[f"{prefix}:ocr-*", "billing-*", "nothing-*"],
    )
    try:
        refs = await service.queues()
        assert sorted(r.full for r in refs) == sorted(got)
        assert {r.full: r.shown for r in refs}[f"{other}:billing-x"] == "billing-x"
    finally:
        await service.redis.aclose()


async def test_a_full_name_glob_keeps_to_its_prefix(
    redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    """`<p>:ocr-*` is prefix `<p>`, names `ocr-*`: it must not take the queues of a prefix
    that merely starts with `<p>:ocr-` (the last `:` separates prefix and name)."""
    legacy = f"{prefix}:ocr-legacy"
    await asyncio.gather(
        node("add", queue="ocr-a", jobs=jobs(1)),
        node("add", prefix=legacy, queue="invoices", jobs=jobs(1)),
    )
    service = QueueService(redis, prefixes=[prefix, legacy], queues=[f"{prefix}:ocr-*"])
    assert [r.full for r in await service.queues()] == [f"{prefix}:ocr-a"]


# -- 5. a queue created after start -----------------------------------------------------


async def test_a_queue_created_after_start_is_found_when_named(
    redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    await node("add", queue="old-q", jobs=jobs(1))
    service = QueueService(redis, prefixes=[prefix], rediscover_ms=60_000)
    assert [s.name for s in await service.snapshot()] == ["old-q"]
    first = service.catalog.last_cost
    assert first is not None

    await asyncio.gather(
        node("add", queue="new-q", jobs=jobs(2)), node("add", queue="other-q", jobs=jobs(1))
    )
    # Named: found by discovering again, without a new service or a restart.
    [snap] = await service.snapshot(["new-q"])
    assert (snap.prefix, snap.name, snap.counts["waiting"]) == (prefix, "new-q", 2)
    assert await service.pause("other-q") is False  # "was it paused before": no
    assert (await node("is-paused", queue="other-q"))["paused"] is True
    assert [q.name for q in await service.queues()] == ["new-q", "old-q", "other-q"]

    # The slow cadence: due once `rediscover_ms` has passed since the last discovery.
    last = service.catalog.last_cost
    assert last is not None and last.at_ms >= first.at_ms
    assert not service.catalog.refresh_due(last.at_ms + 59_999)
    assert service.catalog.refresh_due(last.at_ms + 60_000)
    # A configuration that needs no discovery is never due.
    plain = QueueService(redis, prefixes=[prefix], queues=["old-q"], rediscover_ms=60_000)
    assert not plain.catalog.refresh_due(last.at_ms + 10**9)


# -- 6. an ambiguous short name ---------------------------------------------------------


async def test_an_ambiguous_short_name_lists_both_full_names(
    redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    notif = f"{prefix}:notifications"
    env = {"QUEUEOPS_PREFIX": f"{prefix},{notif}"}
    await asyncio.gather(
        node("add", queue="email", jobs=jobs(1)),
        node("add", prefix=notif, queue="email", jobs=jobs(2)),
        node("add", queue="events", jobs=jobs(3)),
    )
    run = await queueops(prefix, "snapshot", "email", **env)
    assert run.code == 2 and run.out == ""
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("queueops: ")
    assert f"{prefix}:email" in lines[0] and f"{notif}:email" in lines[0]
    dlq = await queueops(prefix, "dlq", "list", "email", **env)
    assert dlq.code == 2 and f"{notif}:email" in dlq.err

    fulls = (f"{prefix}:email", f"{notif}:email")
    named = await queueops(prefix, "snapshot", *fulls, "--json", **env)
    assert named.code == 0, named.err
    got = [(f"{q['prefix']}:{q['name']}", q["counts"]["waiting"]) for q in named.json()["queues"]]
    assert got == [(fulls[0], 1), (fulls[1], 2)]

    # The whole snapshot shows both by full name, a unique name by its short one.
    text = await queueops(prefix, "snapshot", **env)
    assert text.code == 0, text.err
    rows = {line.split()[0] for line in text.out.splitlines() if line.strip()}
    assert {*fulls, "events"} <= rows
    assert "email" not in rows

    # In process: the labels, and the full name resolving to its QueueRef.
    service = QueueService(redis, prefixes=[prefix, notif])
    shown = {s.full: s.shown for s in await service.snapshot()}
    assert shown == {fulls[0]: fulls[0], fulls[1]: fulls[1], f"{prefix}:events": "events"}
    assert await service.require_queue(fulls[1]) == QueueRef(notif, "email")


# -- 7. what discovery takes, and what it costs -------------------------------------------


async def test_discovery_excludes_dlqs_and_foreign_meta_keys_and_reports_its_cost(
    redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    await asyncio.gather(
        node("add", queue="jobs", jobs=jobs(1)),
        node("add", queue="events", jobs=jobs(1)),
        node("fail", queue="poisoned", count=1, reason="x"),
    )
    service = QueueService(redis, prefixes=[prefix])
    move = await service.quarantine("poisoned", "1", reason="t", actor="test")
    assert move.moved, move.problem
    # npm reading the DLQ (as Bull Board would) gives `poisoned-dlq` a BullMQ meta hash.
    assert (await node("job", queue="poisoned-dlq", id="1"))["state"] == "failed"
    assert await redis.hget(f"{prefix}:poisoned-dlq:meta", "version")
    # Keys ending in `:meta` that are no BullMQ queue's: another app's hash, a string, a
    # hash with a `version` that is not bullmq's.
    await redis.hset(f"{prefix}:x:y:meta", mapping={"owner": "billing", "schema": "3"})
    await redis.set(f"{prefix}:a:b:meta", "not a hash")
    await redis.hset(f"{prefix}:settings:meta", mapping={"version": "2.1"})

    catalog = QueueService(redis, prefixes=[prefix]).catalog
    found = await catalog.discover()
    assert [r.name for r in found] == ["events", "jobs", "poisoned"]
    cost = catalog.last_cost
    assert cost is not None and cost.found == 3
    # Every `<p>:*:meta` key was checked once: 4 queues (one a DLQ) and the 3 foreign keys.
    assert cost.checks == 7
    # SCAN walks the whole keyspace, COUNT 1000 keys a call, whatever its MATCH.
    keys = await redis.dbsize()
    assert 1 <= cost.scan_calls <= keys // 1000 + 2
    assert cost.commands == cost.scan_calls + cost.checks

    again = await catalog.discover()
    assert again == found
    second = catalog.last_cost
    assert second is not None and second.at_ms >= cost.at_ms
    # The 4 verified queues are not checked again, nor the string key (never a hash); the
    # two hashes without BullMQ's fields are (a queue's meta may gain them).
    assert second.checks == 2


# -- 8. nothing configured: any prefix --------------------------------------------------


async def test_unset_prefix_and_queues_discover_every_prefix(prefix: str, node: NodeCall) -> None:
    notif = f"{prefix}:notifications"
    other = f"{prefix}.other"
    await asyncio.gather(
        node("add", queue="events", jobs=jobs(1)),
        node("add", prefix=notif, queue="email", jobs=jobs(2)),
        node("add", prefix=other, queue="super-admin.bulk-job", jobs=jobs(3)),
        node("add", prefix=other, queue="events-dlq", jobs=jobs(1)),
    )
    run = await queueops(prefix, "snapshot", "--json")
    assert run.code == 0, run.err
    got = {full: q["counts"]["waiting"] for full, q in by_full(run.json(), prefix).items()}
    assert got == {
        f"{prefix}:events": 1,
        f"{notif}:email": 2,
        f"{other}:super-admin.bulk-job": 3,
    }
    named = await queueops(prefix, "snapshot", f"{notif}:email", "--json")
    assert named.code == 0, named.err
    [q] = named.json()["queues"]
    assert (q["prefix"], q["name"]) == (notif, "email")


async def test_naming_an_unknown_queue_asks_its_meta_key_not_the_whole_keyspace(
    redis: aioredis.Redis, prefix: str, node: NodeCall
) -> None:
    """A typo or a viewer's loop of unknown names must not SCAN the keyspace each time:
    with prefixes configured the meta keys where the queue could be are asked directly;
    with none, a short name costs one discovery per MISS_SCAN_MS at most."""
    await node("add", queue="known", jobs=jobs(1))
    service = QueueService(redis, prefixes=[prefix])
    await service.queues()
    discovered = service.catalog.last_cost
    for _ in range(3):
        with pytest.raises(NotFound):
            await service.require_queue("typo-q")
    await node("add", queue="fresh", jobs=jobs(1))
    assert (await service.require_queue("fresh")).full == f"{prefix}:fresh"
    assert (await service.require_queue(f"{prefix}:fresh")).name == "fresh"
    assert service.catalog.last_cost is discovered  # no discovery ran again

    anywhere = QueueService(redis)
    await anywhere.queues()
    first = anywhere.catalog.last_cost
    with pytest.raises(NotFound):
        await anywhere.require_queue("typo-q")  # a short name under any prefix: one SCAN
    second = anywhere.catalog.last_cost
    assert second is not first
    for _ in range(3):
        with pytest.raises(NotFound):
            await anywhere.require_queue("typo-q")
    assert anywhere.catalog.last_cost is second  # within MISS_SCAN_MS: no SCAN again
