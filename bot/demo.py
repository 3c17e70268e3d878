"""`queueops shell --demo`: a realistic bad night on the embedded Redis, made with PyPI
bullmq the way producers and workers make it (no hand-written keys).

- batch-jobs: a backlog (1,200 waiting, the oldest 40 minutes old), a few delayed and failed
- dsar-jobs: poison jobs: the same TypeError over and over, and a burst of ECONNRESET
- journey-jobs: paused, with work piling up
- retrain-jobs: delayed and prioritized jobs
- seed-jobs: idle, everything completed

It also gives the demo an app (`demo_app`): the app's .env in a private temporary folder
(a drain token, WORKER_INPROCESS=0) and its drain endpoint (bot/demo_drain.py), and the
settings pointed at them, so `drain`, `cron`, `budget`, `mode` and `rotate-token` work on
it. The night's last cron ticks run for real through that app (`cron history`), and an hour
of depth samples is kept as the tick keeps them (`snapshot --chart`).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bullmq import Queue, Worker
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.config import Settings
from bot.errors import OperationFailed
from bot.queues.bullmq.control import pause
from bot.queues.bullmq.probe import TickOptions
from bot.queues.bullmq.store import QueueStore
from bot.queues.keys import QueueRef
from bot.queues.samples import WINDOW_MS
from bot.queues.service import QueueService

WORKER_CLOSE_S = 5.0
"""How long a demo worker may take to stop, gently and then forced (PyPI bullmq's close()
waits for its jobs and shields itself from cancellation, so it is never awaited bare)."""
POISON = "TypeError: Cannot read properties of undefined (reading 'email')"
NETWORK = "connect ECONNRESET 10.0.3.17:5432"
DEMO_QUEUES = ("batch-jobs", "dsar-jobs", "journey-jobs", "retrain-jobs", "seed-jobs")
DEMO_CRON_OWNER = "queueops-shell-demo"
DEMO_FOLDER = "queueops-demo-"
"""The demo app's folder in the temporary directory: `queueops-demo-<pid>-<random>`."""
DEMO_DOTENV = """\
# The demo app's environment (queueops shell --demo); removed when the shell exits.
NODE_ENV=production
DRAIN_QUEUES_TOKEN={token}
WORKER_INPROCESS=0
"""


async def run_demo_job(job: Any) -> str:
    """What the demo's jobs do, in its workers and its app's drain: the poison ones fail as
    they did all night, `data.sleepMs` takes that long (as the app's test jobs do)."""
    if job.name == "poison":
        raise TypeError(POISON.removeprefix("TypeError: "))
    if job.name == "flaky":
        raise ConnectionResetError(NETWORK)
    data = job.data if isinstance(job.data, dict) else {}
    sleep_ms = data.get("sleepMs")
    if isinstance(sleep_ms, int | float) and sleep_ms > 0:
        await asyncio.sleep(sleep_ms / 1000)
    return "ok"


async def _process(url: str, prefix: str, queue: Queue, finished: int) -> None:
    """Run a real Worker until `finished` jobs have completed or failed."""

    async def work(job: Any, token: str) -> str:
        return await run_demo_job(job)

    worker = Worker(
        queue.name, work, {"prefix": prefix, "connection": url, "autorun": False, "concurrency": 20}
    )
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(500):
            counts = await queue.getJobCounts("failed", "completed")
            if counts["failed"] + counts["completed"] >= finished:
                break
            await asyncio.sleep(0.02)
    finally:
        await _close_within(worker, WORKER_CLOSE_S)
        task.cancel()
        await asyncio.wait({task}, timeout=WORKER_CLOSE_S)


async def _close_within(worker: Worker, seconds: float) -> None:
    """close(), and close(force=True) if that does not finish in time; OperationFailed if
    neither does (the caller's thread is then abandoned, never the terminal)."""
    for force in (False, True):
        closing = asyncio.ensure_future(worker.close(force=force))
        done, _ = await asyncio.wait({closing}, timeout=seconds)
        if done:
            closing.result()
            return
    raise OperationFailed(f"a demo worker did not stop within {2 * seconds:.0f} s")


@contextmanager
def demo_app(settings: Settings) -> Iterator[Settings]:
    """`settings` pointed at the demo's own app for the block: DRAIN_URL its drain endpoint
    (on 127.0.0.1), the drain token the one in its .env, WORKER_MODE_BACKEND=dotenv on that
    .env. Whatever the environment says about a real app is never used by the demo. The
    endpoint is stopped and the folder removed however the block ends."""
    from bot.demo_drain import drain_endpoint  # aiohttp: only the demo pays for it

    _remove_left_behind()
    folder = Path(tempfile.mkdtemp(prefix=f"{DEMO_FOLDER}{os.getpid()}-"))  # 0700
    try:
        env_file = folder / ".env"
        token = secrets.token_hex(32)
        env_file.write_text(DEMO_DOTENV.format(token=token))
        with drain_endpoint(settings.redis_url, settings.prefix, DEMO_QUEUES, env_file) as url:
            yield settings.model_copy(
                update={
                    "drain_url": url,
                    "drain_queues_token": SecretStr(token),
                    "cron_secret": None,
                    "cron_token": None,
                    "worker_mode_backend": "dotenv",
                    "worker_mode_dotenv": env_file,
                }
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _remove_left_behind() -> None:
    """The folders of demos that could not clean up (a SIGKILL): this user's, whose process
    is gone."""
    for folder in Path(tempfile.gettempdir()).glob(f"{DEMO_FOLDER}*-*"):
        pid = folder.name.removeprefix(DEMO_FOLDER).split("-", 1)[0]
        try:
            if not pid.isdigit() or folder.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # alive (someone else's), or not ours to look at
            continue


def _sample_key_base(settings: Settings) -> str:
    """Where the tick keeps depth samples (as queueops serve and `snapshot --chart` have it)."""
    return f"{settings.state_prefix}:depth:"


async def _cron_ticks(redis: Redis, settings: Settings, service: QueueService) -> int:
    """The night's last drain-cron ticks, run for real through the demo's app: one drains
    the queues that have work, two idle ones follow (the second records what an idle tick
    cost, as `serve` measures it). Returns how many samples the tick keeps per queue."""
    from bot.dispatch import cron_state, drain_client
    from scheduler.cron import DrainCron
    from scheduler.ticker import Ticker

    drain = drain_client(settings, redis)
    if drain is None:
        raise OperationFailed("the demo has no drain endpoint")
    ticker = Ticker(
        service, every_ms=settings.drain_every_ms, sample_key_base=_sample_key_base(settings)
    )
    state = cron_state(redis, settings)
    DrainCron(ticker, state, drain, owner=DEMO_CRON_OWNER, all_queues=settings.queues)
    for _ in range(3):
        if await ticker.tick() is None:
            raise OperationFailed("the demo's cron tick could not probe the queues")
    runs = await state.history(1)
    if not runs:
        raise OperationFailed("the demo's cron tick did not drain (is the mode cron?)")
    if runs[0].error:
        raise OperationFailed(f"the demo's cron tick failed: {runs[0].error}")
    return ticker.options.keep_samples


def _depth_then(queue: str, now: int, minutes_ago: float) -> int:
    """A plausible depth `minutes_ago` for the demo's chart (the newest sample is real)."""
    if queue == "batch-jobs":  # the backlog began 40 minutes ago
        return round(now * max(0.0, 40 - minutes_ago) / 40)
    if queue == "journey-jobs":  # paused some 25 minutes ago; work piles up since
        return round(now * max(0.0, 25 - minutes_ago) / 25)
    if queue == "dsar-jobs" and 25 <= minutes_ago <= 35:  # the requests that then failed
        return now + 17
    if queue == "seed-jobs" and 10 <= minutes_ago <= 20:  # a burst, drained since
        return now + 25
    return now


async def _seed_depth_samples(
    redis: Redis, settings: Settings, service: QueueService, keep: int
) -> None:
    """An hour of depth samples, `keep` per queue as the tick keeps them, newest first: the
    newest taken now by the tick's own script, the older ones made up to tell the night."""
    base = _sample_key_base(settings)
    names = await service.queue_names(refresh=True)
    keys = {name: f"{base}{settings.prefix}:{name}" for name in names}
    if keys:
        await redis.delete(*keys.values())
    await service.probe(options=TickOptions(keep_samples=keep, sample_key_base=base))
    step_ms = WINDOW_MS // max(keep, 2)
    for name, key in keys.items():
        newest = await redis.lindex(key, 0)
        if newest is None:
            continue
        at, _, depth = str(newest).partition(":")
        older = [
            f"{int(at) - i * step_ms}:{_depth_then(name, int(depth), i * step_ms / 60_000)}"
            for i in range(1, keep)
        ]
        if older:
            await redis.rpush(key, *older)


async def fill_demo(redis: Redis, settings: Settings) -> list[str]:
    """Fill the demo queues; returns their names. With the demo's app (DRAIN_URL), the
    first jobs are drained by a real cron tick through it, and depth samples are seeded."""
    url, prefix = settings.redis_url, settings.prefix
    store = QueueStore(redis)
    service = QueueService(
        redis, prefixes=(prefix,), dlq_suffix=settings.dlq_suffix, queues=settings.queues
    )
    now = int(time.time() * 1000)

    batch = store.bullmq(QueueRef(prefix, "batch-jobs"))
    await batch.addBulk(
        [
            {"name": "generate-report", "data": {"tenant": t}, "opts": {"attempts": 1}}
            for t in ("acme", "globex")
        ]
        + [{"name": "poison", "data": {"tenant": "initech"}, "opts": {"attempts": 1}}]
    )
    dsar = store.bullmq(QueueRef(prefix, "dsar-jobs"))
    await dsar.addBulk(
        [
            {
                "name": "poison",
                "data": {"request": f"dsar-{i}", "user": None},
                "opts": {"attempts": 1},
            }
            for i in range(14)
        ]
        + [
            {"name": "flaky", "data": {"request": f"dsar-net-{i}"}, "opts": {"attempts": 1}}
            for i in range(3)
        ]
        + [{"name": "export-user-data", "data": {"request": f"dsar-ok-{i}"}} for i in range(4)]
    )
    seed = store.bullmq(QueueRef(prefix, "seed-jobs"))
    await seed.addBulk([{"name": "seed-tenant", "data": {"tenant": i}} for i in range(25)])
    keep = 0
    if settings.drain_url is not None:
        keep = await _cron_ticks(redis, settings, service)
    else:
        for queue, finished in ((batch, 3), (dsar, 21), (seed, 25)):
            await _process(url, prefix, queue, finished)

    names = ("generate-report", "export-csv", "send-digest")
    await batch.addBulk(
        [
            {
                "name": names[i % 3],
                "data": {"tenant": f"t{i % 40}", "rows": i * 10},
                "opts": {"timestamp": now - (40 * 60_000) + i * 2000},
            }
            for i in range(1200)
        ]
    )
    for i in range(3):
        await batch.add("send-digest", {"tenant": f"t{i}"}, {"delay": (i + 1) * 15 * 60_000})

    await dsar.addBulk(
        [{"name": "export-user-data", "data": {"request": f"dsar-new-{i}"}} for i in range(4)]
    )

    journey = store.bullmq(QueueRef(prefix, "journey-jobs"))
    await journey.addBulk([{"name": "advance-step", "data": {"journey": i}} for i in range(37)])
    await pause(store, QueueRef(prefix, "journey-jobs"))

    retrain = store.bullmq(QueueRef(prefix, "retrain-jobs"))
    await retrain.add("retrain-model", {"model": "ranker"}, {"delay": 60 * 60_000})
    await retrain.add("retrain-model", {"model": "spam"}, {"delay": 2 * 60 * 60_000})
    await retrain.add("retrain-model", {"model": "urgent-fix"}, {"priority": 1})

    if keep:
        await _seed_depth_samples(redis, settings, service, keep)
    return list(DEMO_QUEUES)
