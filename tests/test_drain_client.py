"""The drain client against a local HTTP server that answers what a broken app answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.drain import DrainClient, DrainError

OK_BODY = {
    "ok": True,
    "durationMs": 5,
    "totalProcessed": 1,
    "totalFailed": 0,
    "queues": {"a": {"jobsProcessed": 1, "jobsFailed": 0, "idleAt": 3}},
}


@pytest_asyncio.fixture
async def app_server() -> AsyncIterator[tuple[str, list[Any], list[dict[str, Any]]]]:
    answers: list[Any] = []
    seen: list[dict[str, Any]] = []

    async def drain(request: web.Request) -> web.StreamResponse:
        seen.append({"query": dict(request.query), "secret": request.headers.get("X-Cron-Secret")})
        answer = answers.pop(0) if answers else OK_BODY
        if answer == "hang":
            await asyncio.sleep(10)
        if isinstance(answer, web.StreamResponse):
            return answer
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/api/v1/cron/drain-queues", drain)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), answers, seen
    await server.close()


async def test_the_request_follows_seed_001(app_server: Any) -> None:
    url, _, seen = app_server
    body = await DrainClient(url, "s3cret").drain(
        "a", max_duration_ms=900_000, max_jobs=5, concurrency=3
    )
    assert body.total_processed == 1 and body.queues["a"].idle_at == 3
    assert seen == [
        {
            "secret": "s3cret",
            "query": {
                "queue": "a",
                "maxDurationMs": "600000",
                "maxJobsPerQueue": "5",
                "maxConcurrentQueues": "3",
            },
        }
    ]


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (
            web.json_response({"ok": False, "error": "REDIS_URL not configured"}, status=500),
            "the app failed to drain (500): REDIS_URL not configured",
        ),
        ({"ok": True, "durationMs": 1}, "has an unexpected shape: totalProcessed: Field required"),
        (
            {**OK_BODY, "queues": {"a": {"jobsProcessed": -1, "jobsFailed": 0, "idleAt": 0}}},
            "queues.a.jobsProcessed",
        ),
        (web.Response(status=418, text="teapot"), "unexpected answer 418"),
    ],
)
async def test_bad_answers_are_one_line(app_server: Any, answer: Any, says: str) -> None:
    url, answers, _ = app_server
    answers.append(answer)
    with pytest.raises(DrainError) as err:
        await DrainClient(url, "t").drain()
    assert says in str(err.value) and "\n" not in str(err.value)


async def test_503_is_retried_then_succeeds(app_server: Any) -> None:
    url, answers, seen = app_server
    answers.extend([web.Response(status=503), web.Response(status=502)])
    body = await DrainClient(url, "t", backoff_s=0.01).drain()
    assert body.ok and len(seen) == 3


async def test_no_token_is_one_line() -> None:
    with pytest.raises(DrainError, match="no drain token: set DRAIN_QUEUES_TOKEN"):
        await DrainClient("http://127.0.0.1:1", None).drain()
