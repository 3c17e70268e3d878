"""`job show` and `dlq replay QUEUE ID --set/--patch` against the real npm bullmq: Node
writes the jobs (failed attempts, logs, progress, a FlowProducer tree, a big payload) and
queueops reads them; queueops replays an edited job and Node finds and processes it."""

from __future__ import annotations

import asyncio
import json
import shlex
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from conftest import NodeCall
from pg_fixtures import load_seed_schema
from redis_for_tests import REDIS_URL
from slack_helpers import MakeBot, slash
from slack_stub import SlackStub

from bot.config import load_settings
from bot.dispatch import make_dispatcher
from bot.errors import NotFound, Refused, UsageError
from bot.queues.bullmq import dlq
from bot.queues.bullmq.jobs import LOG_LINES
from bot.queues.bullmq.store import Checkpoint
from bot.queues.models import DataEdit
from bot.queues.postgres.backend import PostgresBackend
from bot.queues.service import QueueService
from bot.render_text import render_text
from bot.roles import Role
from commands.dlq import DlqReplayOnePreview, DlqReplayReply, parse_replay
from commands.job import DATA_CHARS, JobShowReply
from commands.reply import Reply
from commands.runner import ConfirmationNeeded


async def test_job_show_has_the_newest_failure_logs_and_progress(
    service: QueueService, node: NodeCall
) -> None:
    job_id = (await node("attempts", queue="jobs", attempts=3, logLines=20))["id"]
    job = await service.job("jobs", job_id)
    assert job.state == "failed" and job.attempts == 3
    assert job.failed_reason == "flaky failure on attempt 3"
    # npm bullmq appends each attempt's stack; the record holds them newest first.
    assert len(job.stacktrace) == 3
    assert "attempt 3" in job.stacktrace[0] and "attempt 1" in job.stacktrace[-1]
    assert job.progress == {"attempt": 3}
    assert job.logs_total == 60 and len(job.logs) == LOG_LINES
    assert job.logs[0] == "attempt 1 line 10" and job.logs[-1] == "attempt 3 line 19"
    assert job.opts.get("attempts") == 3 and job.children is None and job.parent_key is None
    text = render_text(JobShowReply(job=job).view())
    assert "attempts        3 of 3" in text
    latest = text.index("the latest stack trace")
    assert "flaky failure on attempt 3" in text[latest:]
    assert "2 earlier stack traces kept" in text
    assert f"logs (the newest {LOG_LINES} of 60)" in text
    data = JobShowReply(job=job).data()["job"]
    assert data["logsTotal"] == 60 and data["progress"] == {"attempt": 3}


async def test_job_show_has_a_flows_parent_and_children(
    service: QueueService, node: NodeCall, prefix: str
) -> None:
    tree = await node("flow", queue="jobs")
    parent = await service.job("jobs", tree["parent"])
    assert parent.state == "waiting-children"
    kids = parent.children
    assert kids is not None
    assert (kids.pending, kids.processed, kids.ignored, kids.failed) == (2, 1, 1, 0)
    child_key = f"{prefix}:jobs-children:"
    assert kids.pending_keys == sorted(child_key + i for i in tree["children"]["pending"])
    assert kids.processed_keys == [child_key + tree["children"]["done"]]
    ignored = child_key + tree["children"]["ignored"]
    assert kids.ignored_reasons == {ignored: "section 1 is missing"}
    text = render_text(JobShowReply(job=parent).view())
    assert "children (a flow parent of 4)" in text
    assert f"processed        1: {child_key}{tree['children']['done']}" in text
    child = await service.job("jobs-children", tree["children"]["done"])
    assert child.parent_key == f"{prefix}:jobs:{tree['parent']}"
    assert child.state == "completed" and child.return_value == {"rows": 0}
    assert f"parent (flow)   {prefix}:jobs:{tree['parent']}" in render_text(
        JobShowReply(job=child).view()
    )


async def test_a_big_payload_is_cut_in_text_and_attached_whole_in_slack(
    service: QueueService, node: NodeCall, make_bot: MakeBot, slack: SlackStub
) -> None:
    blob = "x" * 10_000
    [job_id] = (await node("add", queue="jobs", jobs=[{"name": "big", "data": {"blob": blob}}]))[
        "ids"
    ]
    text = render_text(JobShowReply(job=await service.job("jobs", job_id)).view())
    assert f"payload cut at {DATA_CHARS:,}" in text and blob not in text
    assert f"job {job_id} in jobs, whole: a file in Slack" in text

    bot = await make_bot(queues="jobs")
    await slash(bot, slack, f"job show jobs {job_id}")
    [reply] = await slack.wait_for("respond:r1")
    assert f"job-{job_id}.json below" in str(reply.body["blocks"])
    [asked] = await slack.wait_for("files.getUploadURLExternal")
    assert asked.body["filename"] == f"job-{job_id}.json"
    [upload] = await slack.wait_for("upload")
    [done] = await slack.wait_for("files.completeUploadExternal")
    assert "whole" in str(done.body)
    # What was uploaded is the whole job as `--json` has it: the blob in full.
    assert upload.body["size"] == int(asked.body["length"]) > len(blob)


async def _quarantined(service: QueueService, node: NodeCall) -> tuple[str, dict[str, Any]]:
    [job_id] = (await node("fail", queue="jobs", count=1, reason="bad customer"))["ids"]
    await service.quarantine("jobs", job_id, reason="fix the customer", actor="test")
    entry = await service.dlq_show("jobs", job_id)
    assert isinstance(entry.data, dict)
    return job_id, entry.data


def _edit(*words: str) -> DataEdit:
    return parse_replay(["jobs", "1", *words]).edit


async def test_edit_then_replay_is_seen_and_processed_by_npm(
    redis: aioredis.Redis, prefix: str, service: QueueService, node: NodeCall
) -> None:
    job_id, original = await _quarantined(service, node)
    settings = load_settings(redis_url=REDIS_URL, prefix=prefix, state_prefix=f"{prefix}-state")
    dispatcher = make_dispatcher(redis, settings, rate_limited=False)
    line = (
        f"dlq replay jobs {job_id} --set payload.text=fixed --set n=41 --set payload.list.0=null "
        '--set "customer.name=\\"Ann\\"" '
        '--patch \'{"payload": {"text": "x"}, "extra": {"k": true}}\''
    )

    async def run(confirmed: bool) -> Reply:
        outcome = await dispatcher.run(
            shlex.split(line), actor="t", role=Role.OPERATOR, transport="shell", confirmed=confirmed
        )
        return outcome.reply

    asked = await run(False)
    assert isinstance(asked, ConfirmationNeeded)
    preview = asked.preview
    assert isinstance(preview, DlqReplayOnePreview)
    changes = {c.path: (c.before, c.after) for c in preview.changes}
    assert changes == {
        "n": ("0", "41"),
        "payload.text": ('"payload 0"', '"fixed"'),  # the patch first, then --set
        "payload.list": ("[0,1]", "[null,1]"),
        "extra": (None, '{"k":true}'),
        "customer": (None, '{"name":"Ann"}'),
    }
    shown = render_text(preview.view())
    assert "payload.text" in shown and '"fixed"' in shown and "qo.originalData" in shown
    assert (await node("where", queue="jobs", ids=[job_id]))[job_id] == {
        "source": None,
        "dlq": "failed",
    }  # the preview changed nothing

    done = await run(True)
    assert isinstance(done, DlqReplayReply) and [j.job_id for j in done.result.replayed] == [job_id]
    assert "changed in its data" in render_text(done.view())
    seen = await node("job", queue="jobs", id=job_id)
    want = {
        "n": 41,
        "payload": {"text": "fixed", "list": [None, 1]},
        "extra": {"k": True},
        "customer": {"name": "Ann"},
    }
    assert seen["state"] == "waiting" and seen["data"] == want and seen["attemptsMade"] == 0
    fields = await redis.hgetall(f"{prefix}:jobs:{job_id}")
    assert json.loads(fields["qo.originalData"]) == original
    assert fields["qo.editedBy"] == "t"
    assert (await service.job("jobs", job_id)).original_data == original
    assert await node("where", queue="jobs", ids=[job_id]) == {
        job_id: {"source": "waiting", "dlq": None}
    }
    # A Node Worker takes it as any other job: the extra hash fields do not bother it.
    processed = (await node("process", queue="jobs", count=1))["processed"]
    assert processed == [{"id": job_id, "name": "poison", "data": want, "attemptsMade": 0}]
    assert (await node("job", queue="jobs", id=job_id))["state"] == "completed"


async def test_concurrent_edited_replays_of_one_job_move_it_once(
    service: QueueService, node: NodeCall
) -> None:
    job_id, _ = await _quarantined(service, node)
    edit = _edit("--set", "n=7")
    outcomes = await asyncio.gather(
        *(service.dlq_replay_one("jobs", job_id, edit, actor="t") for _ in range(5)),
        return_exceptions=True,
    )
    moved = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(moved) == 1 and moved[0][0].replayed[0].job_id == job_id
    assert all(isinstance(o, NotFound) for o in outcomes if isinstance(o, BaseException))
    assert (await node("counts", queues=["jobs"]))["jobs"]["waiting"] == 1
    assert (await node("job", queue="jobs", id=job_id))["data"]["n"] == 7


class Crash(Exception):
    """Stands for the process dying right after a step."""


def crash_after(step_to_die: str) -> Checkpoint:
    async def checkpoint(step: str) -> None:
        if step == step_to_die:
            raise Crash(step)

    return checkpoint


@pytest.mark.parametrize(("die_after", "place"), [("read", "dlq"), ("moved", "source")])
async def test_a_crash_leaves_the_job_in_exactly_one_place(
    service: QueueService, node: NodeCall, die_after: str, place: str
) -> None:
    job_id, original = await _quarantined(service, node)
    ref = service.ref("jobs")
    with pytest.raises(Crash):
        await dlq.replay_one(
            service.store,
            ref,
            job_id,
            _edit("--set", "n=9"),
            actor="t",
            checkpoint=crash_after(die_after),
        )
    found = (await node("where", queue="jobs", ids=[job_id]))[job_id]
    assert {p for p, state in found.items() if state} == {place}
    if place == "dlq":  # run again: it finishes, once
        assert (await service.dlq_show("jobs", job_id)).data == original
        result, _ = await service.dlq_replay_one("jobs", job_id, _edit("--set", "n=9"), actor="t")
        assert len(result.replayed) == 1
    else:  # run again: nothing left to move, said in one line
        with pytest.raises(NotFound, match="is not in 'jobs-dlq'"):
            await service.dlq_replay_one("jobs", job_id, _edit("--set", "n=9"), actor="t")
    assert (await node("job", queue="jobs", id=job_id))["data"]["n"] == 9


async def test_an_edit_the_data_cannot_take_is_one_line(
    service: QueueService, node: NodeCall
) -> None:
    job_id, _ = await _quarantined(service, node)
    with pytest.raises(UsageError, match=r"has a number at 'n'; --set n\.x needs an object"):
        await service.dlq_replay_one_preview("jobs", job_id, _edit("--set", "n.x=1"))
    with pytest.raises(UsageError, match=r"list of 2 at 'payload\.list'; '5' is not one"):
        await service.dlq_replay_one_preview("jobs", job_id, _edit("--set", "payload.list.5=1"))
    with pytest.raises(UsageError, match="changes nothing"):
        await service.dlq_replay_one("jobs", job_id, _edit("--set", "n=0"), actor="t")
    # A plain (unedited) replay by id moves it as it is, with no qo.originalData.
    result, changes = await service.dlq_replay_one("jobs", job_id, DataEdit(), actor="t")
    assert len(result.replayed) == 1 and changes == []
    assert (await service.job("jobs", job_id)).original_data is None


def test_values_parse_as_json_else_text() -> None:
    edit = _edit(
        "--set", "a=1", "--set", "b=true", "--set", "c=null", "--set", 'd="7"', "--set", "e=hello",
        "--set", "f=NaN", "--set", "g.h=[1]",
    )  # fmt: skip
    assert edit.sets == [
        (["a"], 1), (["b"], True), (["c"], None), (["d"], "7"), (["e"], "hello"),
        (["f"], "NaN"), (["g", "h"], [1]),
    ]  # fmt: skip
    assert parse_replay(["jobs", "--count", "3"]).job_id is None  # the bulk form as before
    for words, says in [
        (["jobs", "--set", "a=1"], "--set and --patch edit one job: name its JOB_ID"),
        (["jobs", "1", "--count", "2"], "JOB_ID replays that one job; leave out --count"),
        (["jobs", "1", "--set", "a..b=1"], "--set: 'a..b' has an empty key"),
        (["jobs", "1", "--set", ".".join("k" * 17) + "=1"], "deeper than 16 keys"),
        (["jobs", "1", "--set", "a=" + "[" * 40 + "]" * 40], "nests too deep"),
        (["jobs", "1", "--patch", "{nope"], "--patch: '{nope' is not JSON"),
        (["jobs", "1", *["--set", "a=1"] * 21], "--set: at most 20 in one replay (got 21)"),
    ]:
        with pytest.raises(UsageError) as err:
            parse_replay(words)
        assert says in str(err.value), str(err.value)


async def test_the_db_queue_still_shows_a_row_and_refuses_an_edited_replay(
    redis: aioredis.Redis, prefix: str, pg_url: str, pg_conn: psycopg.AsyncConnection[Any]
) -> None:
    await load_seed_schema(pg_conn)
    cur = await pg_conn.execute(
        "INSERT INTO queue_jobs (type, status, attempts, payload) VALUES"
        " ('process_snapshot', 'failed', 2, '{\"user\": 1}') RETURNING id::text"
    )
    [(row_id,)] = await cur.fetchall()
    db_queue = PostgresBackend.from_settings(load_settings(queue_jobs_database_url=pg_url))
    assert db_queue is not None
    service = QueueService(redis, prefixes=[prefix], postgres=db_queue)
    try:
        job = await service.job("queue_jobs", row_id)
        assert job.data == {"user": 1} and job.attempts == 2 and job.logs == []
        text = render_text(JobShowReply(job=job).view())
        assert "process_snapshot" in text and "logs" not in text
        for call in (
            service.dlq_replay_one_preview("queue_jobs", row_id, _edit("--set", "user=2")),
            service.dlq_replay_one("queue_jobs", row_id, _edit("--set", "user=2"), actor="t"),
        ):
            with pytest.raises(Refused, match="is for BullMQ queues; 'queue_jobs' is a DB job"):
                await call
    finally:
        await db_queue.close()


async def test_the_first_original_survives_requarantine_and_any_replay(
    redis: aioredis.Redis, prefix: str, service: QueueService, node: NodeCall
) -> None:
    job_id, original = await _quarantined(service, node)
    await service.dlq_replay_one("jobs", job_id, _edit("--set", "n=1"), actor="t")
    key = f"{prefix}:jobs:{job_id}"
    # Quarantined again (from waiting), then edited again: the original stays the first.
    await service.quarantine("jobs", job_id, reason="still bad", actor="t")
    await service.dlq_replay_one("jobs", job_id, _edit("--set", "n=2"), actor="t")
    assert json.loads(await redis.hget(key, "qo.originalData")) == original
    # And a bulk replay carries it too.
    await service.quarantine("jobs", job_id, reason="again", actor="t")
    result = await service.dlq_replay("jobs", count=1)
    assert [j.job_id for j in result.replayed] == [job_id]
    assert json.loads(await redis.hget(key, "qo.originalData")) == original
    assert (await node("job", queue="jobs", id=job_id))["data"]["n"] == 2


async def test_slack_asks_with_the_diff_before_an_edited_replay(
    service: QueueService, node: NodeCall, make_bot: MakeBot, slack: SlackStub
) -> None:
    job_id, _ = await _quarantined(service, node)
    bot = await make_bot(queues="jobs")
    await slash(bot, slack, f"dlq replay jobs {job_id} --set payload.text=fixed", user="UOPS")
    [reply] = await slack.wait_for("respond:r1")
    blocks = str(reply.body["blocks"])
    assert "payload.text" in blocks and "fixed" in blocks and "queueops_confirm" in blocks
    assert (await node("where", queue="jobs", ids=[job_id]))[job_id]["dlq"] == "failed"
