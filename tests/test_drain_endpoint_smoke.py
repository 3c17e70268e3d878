"""Smoke check of tests/interop/drain-endpoint.mjs, the seed 001 drain endpoint on npm bullmq."""

from __future__ import annotations

import httpx
import pytest
import redis.asyncio as aioredis
from drain_helpers import DRAIN_PATH, TOKEN, Endpoint, add_jobs

pytestmark = pytest.mark.asyncio


async def counts(redis: aioredis.Redis, prefix: str, queue: str) -> dict[str, int]:
    base = f"{prefix}:{queue}"
    return {
        "wait": await redis.llen(f"{base}:wait"),
        "completed": await redis.zcard(f"{base}:completed"),
        "failed": await redis.zcard(f"{base}:failed"),
    }


async def test_auth_and_validation(endpoint: Endpoint) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        resp, log = await endpoint.post(http, headers={"X-Cron-Secret": "wrong-token"})
        assert resp.status_code == 401
        assert resp.json() == {"ok": False, "error": "unauthorized"}
        assert log == {
            "method": "POST",
            "path": DRAIN_PATH,
            "queue": None,
            "status": 401,
            "token": "wron",
            "processed": 0,
            "failed": 0,
        }

        resp, log = await endpoint.post(http)
        assert resp.status_code == 401
        assert log["token"] is None

        resp, log = await endpoint.post(
            http, params={"queue": "nope"}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert resp.status_code == 400
        assert resp.json() == {"ok": False, "error": "unknown queue nope"}
        assert (log["status"], log["queue"], log["token"]) == (400, "nope", TOKEN[:4])

        resp, log = await endpoint.post(
            http, params={"maxDurationMs": "soon"}, headers={"X-Cron-Secret": TOKEN}
        )
        assert resp.status_code == 400

        resp = await http.get(endpoint.url + DRAIN_PATH, headers={"X-Cron-Secret": TOKEN})
        assert resp.status_code == 404
        assert (await endpoint.log_line())["status"] == 404


async def test_drain_all_queues(
    endpoint: Endpoint, redis: aioredis.Redis, redis_url: str, prefix: str
) -> None:
    await add_jobs(redis_url, prefix, "a", ["ok-1", "fail", "ok-2"])
    async with httpx.AsyncClient(timeout=10) as http:
        resp, log = await endpoint.post(
            http, params={"maxDurationMs": 5000}, headers={"X-Cron-Secret": TOKEN}
        )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["ok"] is True
    assert (body["totalProcessed"], body["totalFailed"]) == (2, 1)
    assert set(body["queues"]) == {"a", "b"}
    a, b = body["queues"]["a"], body["queues"]["b"]
    assert (a["jobsProcessed"], a["jobsFailed"]) == (2, 1)
    assert 0 < a["idleAt"] <= body["durationMs"]
    assert b == {"jobsProcessed": 0, "jobsFailed": 0, "idleAt": 0}
    assert log == {
        "method": "POST",
        "path": DRAIN_PATH,
        "queue": None,
        "status": 200,
        "token": TOKEN[:4],
        "processed": 2,
        "failed": 1,
    }
    assert await counts(redis, prefix, "a") == {"wait": 0, "completed": 2, "failed": 1}


async def test_max_jobs_per_queue(
    endpoint: Endpoint, redis: aioredis.Redis, redis_url: str, prefix: str
) -> None:
    await add_jobs(redis_url, prefix, "a", ["j1", "j2", "j3"])
    async with httpx.AsyncClient(timeout=10) as http:
        resp, log = await endpoint.post(
            http,
            params={"queue": "a", "maxJobsPerQueue": 1, "maxDurationMs": 5000},
            headers={"X-Cron-Secret": TOKEN},
        )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body["queues"]) == {"a"}
    assert body["queues"]["a"]["jobsProcessed"] == 1
    assert body["totalFailed"] == 0
    assert (log["queue"], log["processed"]) == ("a", 1)
    # Exactly one job was taken: the other two are still waiting, none active.
    assert await counts(redis, prefix, "a") == {"wait": 2, "completed": 1, "failed": 0}
    assert await redis.llen(f"{prefix}:a:active") == 0
