"""What an incident channel's status shows for triage: the snapshot and, for a queue with
failed jobs, its top 3 failure clusters with the keys `--cluster K` takes."""

from __future__ import annotations

import json

from conftest import NodeCall
from slack_helpers import MakeBot, press
from slack_stub import SlackStub

from bot.queues.service import QueueService
from commands.snapshot import snapshot_view
from commands.view import Fields

TOKEN = "triage-token"


async def test_the_status_names_the_top_three_failure_clusters(
    service: QueueService, node: NodeCall
) -> None:
    reasons = (
        ["connect ECONNREFUSED 10.0.0.7:5432"] * 4
        + ["Cannot read properties of undefined (reading 'email')"] * 3
        + ["timeout after 3000ms"] * 2
        + ["disk full"]
    )
    await node(
        "fail-with",
        queue="billing",
        jobs=[{"name": "charge", "data": {"i": i}, "reason": r} for i, r in enumerate(reasons)],
    )
    blocks = await snapshot_view(service, ["billing"])
    found = [b for b in blocks if isinstance(b, Fields) and " failures " in b.items[0][0]]
    [clusters] = found
    assert [int(value.split("x ")[0]) for _, value in clusters.items] == [4, 3, 2]
    report = await service.failures("billing", scan=200)
    assert [label.rsplit(" ", 1)[1] for label, _ in clusters.items] == [
        c.key for c in report.clusters[:3]
    ]


async def test_the_cluster_button_quarantines_that_cluster_as_the_presser(
    make_bot: MakeBot, slack: SlackStub, service: QueueService, node: NodeCall
) -> None:
    """Through real Bolt: the pinned status of an alert's channel carries a button per top
    cluster; a viewer's press is refused privately, an operator's moves exactly that
    cluster's jobs to the DLQ (checked by npm bullmq)."""
    reasons = ["connect ECONNREFUSED 10.0.0.7:5432"] * 3 + ["disk full"] * 2
    await node(
        "fail-with",
        queue="billing",
        jobs=[{"name": "charge", "data": {"i": i}, "reason": r} for i, r in enumerate(reasons)],
    )
    bot = await make_bot(alert_webhook_token=TOKEN)
    resp = await bot.post(
        "/alerts/generic",
        data=json.dumps({"title": "Billing failing", "queue": "billing", "fingerprint": "b-1"}),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert resp.status == 200
    [status] = await slack.wait_for("chat.postMessage")
    buttons = [
        e
        for b in status.body["blocks"]
        if b["type"] == "actions"
        for e in b.get("elements", [])
        if str(e.get("action_id", "")).startswith("run_command:")
    ]
    assert [b["text"]["text"] for b in buttons][:2] == [
        f"Quarantine cluster {c.key}" for c in (await service.failures("billing", scan=50)).clusters
    ][:2]
    first = buttons[0]
    assert "confirm" in first and "ECONNREFUSED" in first["confirm"]["text"]["text"]
    await press(bot, slack, first["action_id"], first["value"], user="UVIEW", reply_to="x")
    [refused] = await slack.wait_for("chat.postEphemeral")
    assert "needs the operator role" in refused.body["text"]
    await press(bot, slack, first["action_id"], first["value"], user="UOPS", reply_to="x")
    posts = await slack.wait_for("chat.postMessage", 2)
    assert "3 jobs of 'billing' quarantined" in posts[1].body["text"]
    counts = await node("counts", queues=["billing", "billing-dlq"])
    assert (counts["billing"]["failed"], counts["billing-dlq"]["failed"]) == (2, 3)
