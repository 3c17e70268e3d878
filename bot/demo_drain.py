"""The demo's app: the drain endpoint the bot calls, inside the `queueops shell --demo`
process, so `drain`, the cron, `mode` and `rotate-token` have an app to work on.

The contract is the one bot/drain.py calls and tests/interop/drain-endpoint.mjs implements
on npm bullmq: `POST /api/v1/cron/drain-queues` with `X-Cron-Secret: <token>` (or
`Authorization: Bearer <token>`); query `queue` (else every demo queue), `maxDurationMs`
(default 60000, capped at 600000), `maxConcurrentQueues` (default 2), `maxJobsPerQueue`
(default unbounded). 200 `{"ok": true, "durationMs", "totalProcessed", "totalFailed",
"queues": {"<name>": {"jobsProcessed", "jobsFailed", "idleAt"}}}`; 401 `unauthorized`;
400 an unknown queue or a bad number; 404 any other path or method; 500 when Redis cannot
be reached.

Each queue asked is drained like that endpoint does: if it has waiting or prioritized jobs,
a PyPI bullmq Worker (concurrency 1) takes them until the queue is idle (or paused),
`maxJobsPerQueue` were taken, or the time budget is spent. The jobs run the demo's
processor (bot/demo.py): the poison ones fail as they did all night, the rest succeed.

The tokens accepted are DRAIN_QUEUES_TOKEN, CRON_SECRET and CRON_TOKEN as the app's .env
says at each request (the demo's app "restarts" at once when `rotate-token` or `mode`
rewrites it); a missing file accepts nothing. Compared in constant time.

It runs on an event loop in a daemon thread of its own, bound to 127.0.0.1 on a free port:
`drain_endpoint()` waits at most START_TIMEOUT_S for it and, on the way out, at most
STOP_TIMEOUT_S for the drains in progress to stop and everything to close.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from aiohttp import web
from bullmq import Worker
from redis.asyncio import Redis

from bot.demo import _close_within, run_demo_job
from bot.deploy.dotenv import parse
from bot.drain import DRAIN_PATH, MAX_DURATION_MS
from bot.errors import OperationFailed
from bot.queues.bullmq.store import QueueStore
from bot.queues.keys import QueueRef

log = logging.getLogger(__name__)

DEFAULT_MAX_DURATION_MS = 60_000
DEFAULT_CONCURRENT_QUEUES = 2
TOKEN_VARIABLES = ("DRAIN_QUEUES_TOKEN", "CRON_SECRET", "CRON_TOKEN")
IDLE_POLL_S = 0.1
"""How often a queue being drained is re-counted to see it idle (PyPI bullmq's Worker says
nothing when it runs out of jobs)."""
REDIS_WAIT_S = 1.0
REDIS_COMMAND_S = 5.0
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
SHUTDOWN_GRACE_S = 5.0
WORKER_CLOSE_S = 2.0
"""How long a worker may take to stop, gently (the job in hand finishes) and then forced."""


class BadRequest(Exception):
    pass


def accepted_tokens(env_file: Path) -> list[str]:
    """The tokens the app accepts now: its .env's, in the fallback order."""
    try:
        env = parse(env_file.read_text())
    except OSError:
        return []
    return [env[name] for name in TOKEN_VARIABLES if env.get(name)]


def presented_token(headers: Mapping[str, str]) -> str | None:
    secret = headers.get("X-Cron-Secret", "")
    if secret:
        return secret
    scheme, _, value = headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def is_accepted(presented: str, accepted: Sequence[str]) -> bool:
    """Constant time: fixed-size digests compared, every accepted token looked at."""
    digest = hashlib.sha256(presented.encode()).digest()
    found = False
    for token in accepted:
        found |= hmac.compare_digest(digest, hashlib.sha256(token.encode()).digest())
    return found


def _number(
    query: Mapping[str, str], key: str, *, integer: bool, minimum: int, default: int | None
) -> int | None:
    raw = query.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum or (integer and not value.is_integer()):
        what = f"an integer >= {minimum}" if integer else f"a number >= {minimum}"
        raise BadRequest(f"{key} must be {what}, got {raw!r}")
    return math.floor(value)


class _QueueDrain:
    """One queue's drain within a request: a Worker until idle, max jobs or the deadline."""

    def __init__(self, app: DemoDrainApp, name: str, *, t0: float, deadline: float) -> None:
        self.app = app
        self.name = name
        self.t0 = t0
        self.deadline = deadline
        self.processed = 0
        self.failed = 0
        self.idle_at: int | None = None
        self.busy = False
        self.worker: Any = None
        self.closing: asyncio.Future[None] | None = None

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)

    def stop(self) -> None:
        """Close the worker (once): it finishes the job in hand and takes no other."""
        if self.closing is None and self.worker is not None:
            self.closing = asyncio.ensure_future(_close_within(self.worker, WORKER_CLOSE_S))

    async def run(self, max_jobs: int | None) -> dict[str, int]:
        queue = self.app.store.bullmq(QueueRef(self.app.prefix, self.name))
        if await self.app.runnable(self.name) == 0:
            return self.result(0)
        if time.monotonic() >= self.deadline or self.app.stopping:
            return self.result(self.elapsed_ms())
        taken = 0

        async def process(job: Any, token: str) -> Any:
            nonlocal taken
            self.busy = True
            taken += 1
            if max_jobs is not None and taken >= max_jobs:
                # Closing before this job is finished keeps the worker from fetching another.
                self.stop()
            return await run_demo_job(job)

        def finished(*_: Any) -> None:
            self.busy = False

        def completed(*_: Any) -> None:
            self.processed += 1
            finished()

        def failed(*_: Any) -> None:
            self.failed += 1
            finished()

        self.worker = Worker(
            self.name,
            process,
            {
                "prefix": self.app.prefix,
                "connection": self.app.redis_url,
                "autorun": False,
                "concurrency": 1,
            },
        )
        self.worker.on("completed", completed)
        self.worker.on("failed", failed)
        self.worker.on("error", lambda err, *_: log.debug("worker %s: %s", self.name, err))
        running = asyncio.ensure_future(self.worker.run())
        self.app.running.add(self)
        try:
            while not running.done() and self.closing is None:
                if time.monotonic() >= self.deadline or self.app.stopping:
                    self.stop()
                elif not self.busy and await self._idle(queue):
                    self.idle_at = self.elapsed_ms()
                    self.stop()
                else:
                    await asyncio.wait({running}, timeout=IDLE_POLL_S)
        finally:
            self.app.running.discard(self)
            self.stop()
            assert self.closing is not None
            await asyncio.wait({self.closing}, timeout=2 * WORKER_CLOSE_S + 1)
            if self.closing.done() and not self.closing.cancelled():
                with suppress(Exception):
                    self.closing.result()
            await asyncio.wait({running}, timeout=1)
            if not running.done():
                running.cancel()
        return self.result(self.idle_at if self.idle_at is not None else self.elapsed_ms())

    async def _idle(self, queue: Any) -> bool:
        """Nothing in hand and nothing a worker could take (a paused queue gives none)."""
        try:
            if await self.app.runnable(self.name) == 0:
                return True
            return bool(await asyncio.wait_for(queue.isPaused(), REDIS_COMMAND_S))
        except Exception as err:  # Redis blip: count again at the next poll
            log.debug("counting %s: %s", self.name, err)
            return False

    def result(self, idle_at: int) -> dict[str, int]:
        return {"jobsProcessed": self.processed, "jobsFailed": self.failed, "idleAt": idle_at}


class DemoDrainApp:
    def __init__(self, redis_url: str, prefix: str, queues: Sequence[str], env_file: Path) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.queues = list(queues)
        self.env_file = env_file
        self.stopping = False
        self.running: set[_QueueDrain] = set()
        self.redis: Redis | None = None
        self._store: QueueStore | None = None
        self._runner: web.AppRunner | None = None

    @property
    def store(self) -> QueueStore:
        assert self._store is not None
        return self._store

    async def start(self) -> str:
        """Serve on 127.0.0.1, a free port; returns the base URL (DRAIN_URL)."""
        self.redis = Redis.from_url(
            self.redis_url,
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=5,
            client_name="queueops-demo-app",
        )
        self._store = QueueStore(self.redis)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def stop(self) -> None:
        """Stop the drains in progress (their requests still get what was done), then the
        server, then Redis."""
        self.stopping = True
        for each in list(self.running):
            each.stop()
        if self._runner is not None:
            with suppress(Exception):
                await asyncio.wait_for(self._runner.cleanup(), SHUTDOWN_GRACE_S + 1)
        if self.redis is not None:
            with suppress(Exception):
                await asyncio.wait_for(self.redis.aclose(), 1)
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=1)

    async def runnable(self, name: str) -> int:
        counts = await asyncio.wait_for(
            self.store.bullmq(QueueRef(self.prefix, name)).getJobCounts("waiting", "prioritized"),
            REDIS_COMMAND_S,
        )
        return int(counts.get("waiting", 0)) + int(counts.get("prioritized", 0))

    async def handle(self, request: web.Request) -> web.Response:
        if request.path != DRAIN_PATH or request.method != "POST":
            return web.json_response({"ok": False, "error": "not found"}, status=404)
        token = presented_token(request.headers)
        if token is None or not is_accepted(token, accepted_tokens(self.env_file)):
            return web.json_response({"ok": False, "error": "unauthorized"}, status=401)
        query = request.query
        queue = query.get("queue")
        try:
            if queue is not None and queue not in self.queues:
                raise BadRequest(f"unknown queue {queue}")
            duration = _number(
                query, "maxDurationMs", integer=False, minimum=0, default=DEFAULT_MAX_DURATION_MS
            )
            lanes = _number(
                query,
                "maxConcurrentQueues",
                integer=True,
                minimum=1,
                default=DEFAULT_CONCURRENT_QUEUES,
            )
            max_jobs = _number(query, "maxJobsPerQueue", integer=True, minimum=1, default=None)
        except BadRequest as err:
            return web.json_response({"ok": False, "error": str(err)}, status=400)
        if self.stopping:
            return web.json_response({"ok": False, "error": "shutting down"}, status=503)
        try:
            assert self.redis is not None
            await asyncio.wait_for(self.redis.ping(), REDIS_WAIT_S)
        except Exception as err:
            return web.json_response(
                {"ok": False, "error": f"cannot reach Redis: {type(err).__name__}"}, status=500
            )
        assert duration is not None and lanes is not None
        try:
            body = await self.drain(
                [queue] if queue is not None else self.queues,
                max_duration_ms=min(duration, MAX_DURATION_MS),
                lanes=lanes,
                max_jobs=max_jobs,
            )
        except Exception as err:
            log.debug("drain failed: %s", err)
            return web.json_response({"ok": False, "error": f"drain failed: {err}"}, status=500)
        return web.json_response(body)

    async def drain(
        self, targets: Sequence[str], *, max_duration_ms: int, lanes: int, max_jobs: int | None
    ) -> dict[str, Any]:
        t0 = time.monotonic()
        deadline = t0 + max_duration_ms / 1000
        pending = list(targets)
        out: dict[str, dict[str, int]] = {}

        async def lane() -> None:
            while pending:
                name = pending.pop(0)
                out[name] = await _QueueDrain(self, name, t0=t0, deadline=deadline).run(max_jobs)

        await asyncio.gather(*(lane() for _ in range(min(lanes, len(pending)))))
        queues = {name: out[name] for name in targets}
        return {
            "ok": True,
            "durationMs": int((time.monotonic() - t0) * 1000),
            "totalProcessed": sum(q["jobsProcessed"] for q in queues.values()),
            "totalFailed": sum(q["jobsFailed"] for q in queues.values()),
            "queues": queues,
        }


@contextmanager
def drain_endpoint(
    redis_url: str, prefix: str, queues: Sequence[str], env_file: Path
) -> Iterator[str]:
    """The demo's drain endpoint, running for the block; yields its base URL."""
    app = DemoDrainApp(redis_url, prefix, queues, env_file)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="queueops-demo-app", daemon=True)
    thread.start()
    try:
        try:
            url = asyncio.run_coroutine_threadsafe(app.start(), loop).result(START_TIMEOUT_S)
        except TimeoutError:
            raise OperationFailed(
                f"the demo's drain endpoint did not start within {START_TIMEOUT_S:.0f} s"
            ) from None
        except OSError as err:
            raise OperationFailed(f"the demo's drain endpoint did not start: {err}") from None
        yield url
    finally:
        stopping = asyncio.run_coroutine_threadsafe(app.stop(), loop)
        with suppress(Exception):
            stopping.result(STOP_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(2)
        if not thread.is_alive():
            loop.close()
        # else: something in it hangs; it is a daemon thread and dies with the process.
