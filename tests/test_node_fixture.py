"""Check the Node interop harness itself: npm bullmq can put a queue into every state.

The interop tests compare queueops with the real npm ``bullmq`` package (the
reference implementation). They all start from ``bullmq-cli.mjs populate``, so
this test pins down what that fixture produces before anything relies on it.
"""

from __future__ import annotations

from typing import Any

from conftest import NodeCall

QUEUE = "emails"

EXPECTED_COUNTS = {
    "waiting": 3,
    "delayed": 1,
    "prioritized": 1,
    "failed": 2,
    "completed": 1,
    "active": 1,
    "waiting-children": 1,
    "paused": 0,
}


async def test_populate_puts_jobs_in_every_state(node: NodeCall) -> None:
    populated: dict[str, Any] = await node("populate", queue=QUEUE)
    ids: dict[str, list[str]] = populated["ids"]
    assert {state: len(ids[state]) for state in ids} == {
        state: n for state, n in EXPECTED_COUNTS.items() if state != "paused"
    }

    counts = await node("counts", queues=[QUEUE])
    assert counts == {QUEUE: EXPECTED_COUNTS}

    failed = await node("job", queue=QUEUE, id=ids["failed"][0])
    assert failed is not None
    assert failed["state"] == "failed"
    assert failed["failedReason"].startswith("boom:")
    assert failed["stacktrace"]
    assert failed["stacktrace"][0].startswith("Error: boom:")
    assert isinstance(failed["data"], dict)

    active = await node("job", queue=QUEUE, id=ids["active"][0])
    assert active is not None
    assert active["state"] == "active"

    missing = await node("job", queue=QUEUE, id="does-not-exist")
    assert missing is None
