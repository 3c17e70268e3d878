"""Run a PostgresBackend bulk quarantine (or DLQ replay) in its own process and SIGKILL it
at one checkpoint of one batch, so a test can prove what a crash between two statements of
a batch's transaction leaves behind.

Usage: python crash_pg_quarantine.py DATABASE_URL quarantine|replay STEP BATCH BATCH_SIZE

STEP is a checkpoint name ("locked", "marked", "copied" for a quarantine; "requeued",
"marked" for a replay) and BATCH the 1-based batch at which the process kills itself with
SIGKILL: no `finally`, no rollback sent, no connection closed, as when the OOM killer or a
node failure ends a bot replica. The server is left to abort the open transaction. Batches
are counted on "locked" (quarantine) and "requeued" (replay), the first step of each.
Exits 0 only when the kill never came (the test then fails on the exit status).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from bot.config import load_settings
from bot.patterns import compile_user_pattern
from bot.queues.postgres.backend import PostgresBackend

FIRST_STEP = {"quarantine": "locked", "replay": "requeued"}


async def main(url: str, operation: str, kill_step: str, kill_batch: int, size: int) -> None:
    backend = PostgresBackend.from_settings(load_settings(queue_jobs_database_url=url))
    assert backend is not None
    batch = 0

    async def checkpoint(step: str) -> None:
        nonlocal batch
        if step == FIRST_STEP[operation]:
            batch += 1
        if step == kill_step and batch == kill_batch:
            os.kill(os.getpid(), signal.SIGKILL)

    if operation == "replay":
        await backend.dlq_replay("queue_jobs", count=10_000, batch_size=size, checkpoint=checkpoint)
    else:
        await backend.quarantine_matching(
            "queue_jobs",
            compile_user_pattern("boom"),
            limit=10_000,
            reason="kill test",
            actor="crash",
            batch_size=size,
            checkpoint=checkpoint,
        )
    await backend.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
