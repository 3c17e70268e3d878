"""What an incident channel's status shows for triage: the snapshot and, for a queue with
failed jobs, its top 3 failure clusters with the keys `--cluster K` takes."""

from __future__ import annotations

from conftest import NodeCall

from bot.queues.service import QueueService
from commands.snapshot import snapshot_view
from commands.view import Fields


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
