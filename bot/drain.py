"""The app's drain endpoint, called with httpx.

`POST {DRAIN_URL}/api/v1/cron/drain-queues` with `X-Cron-Secret`, the endpoint's query,
a timeout derived from maxDurationMs, and the 200 body validated. Every failure becomes one
line a person can act on: 400 (unknown queue), 401 (the token), 500 (the app), a timeout,
a refused connection. Connection failures and 502/503/504 are retried with backoff: a
drain is idempotent (the endpoint's contract: a second call no-ops on jobs already in flight).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.errors import OperationFailed
from bot.urls import hide_url_credentials, url_fit_to_show

if TYPE_CHECKING:
    import httpx  # imported where a drain is called: every command builds a DrainClient

DRAIN_PATH = "/api/v1/cron/drain-queues"
MAX_DURATION_MS = 600_000
RETRY_STATUSES = {502, 503, 504}


class QueueDrain(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    jobs_processed: int = Field(alias="jobsProcessed", ge=0)
    jobs_failed: int = Field(alias="jobsFailed", ge=0)
    idle_at: int = Field(alias="idleAt", ge=0)


class DrainResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    ok: bool
    duration_ms: int = Field(alias="durationMs", ge=0)
    total_processed: int = Field(alias="totalProcessed", ge=0)
    total_failed: int = Field(alias="totalFailed", ge=0)
    queues: dict[str, QueueDrain]


class DrainError(OperationFailed):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


TokenSource = Callable[[], Awaitable[str | None]]
"""Where the token rotated by `rotate-token` is kept (queueops' Redis state); it wins over
the configured one, so every replica and the CLI switch together."""


class DrainClient:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        token_source: TokenSource | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        attempts: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        self.url = base_url.rstrip("/") + DRAIN_PATH
        # DRAIN_URL may be http://user:pass@host: messages name the host, never the pass.
        self.host = urlsplit(url_fit_to_show(base_url)).netloc
        self.token = token
        self.token_source = token_source
        self.transport = transport
        self.attempts = attempts
        self.backoff_s = backoff_s

    async def current_token(self) -> str | None:
        rotated = await self.token_source() if self.token_source is not None else None
        return rotated or self.token

    async def drain(
        self,
        queue: str | None = None,
        *,
        max_duration_ms: int = 60_000,
        max_jobs: int | None = None,
        concurrency: int = 2,
        token: str | None = None,
    ) -> DrainResponse:
        """One drain call; `token` overrides the configured one (token rotation's probe)."""
        secret = token or await self.current_token()
        if not secret:
            raise DrainError("no drain token: set DRAIN_QUEUES_TOKEN (or CRON_SECRET, CRON_TOKEN)")
        duration = min(max(max_duration_ms, 1000), MAX_DURATION_MS)
        params: dict[str, str | int] = {
            "maxDurationMs": duration,
            "maxConcurrentQueues": concurrency,
        }
        if queue:
            params["queue"] = queue
        if max_jobs is not None:
            params["maxJobsPerQueue"] = max_jobs
        import httpx

        # The app stops by itself after maxDurationMs; allow it that, and a margin.
        timeout = httpx.Timeout(duration / 1000 + 15, connect=5)
        last: Exception | None = None
        async with httpx.AsyncClient(timeout=timeout, transport=self.transport) as http:
            for attempt in range(self.attempts):
                if attempt:
                    await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
                try:
                    resp = await http.post(
                        self.url, params=params, headers={"X-Cron-Secret": secret}
                    )
                except httpx.ConnectError as err:
                    last = DrainError(
                        f"cannot reach the app at {self.host} (DRAIN_URL): {_reason(err)}"
                    )
                    continue
                except httpx.TimeoutException:
                    raise DrainError(
                        f"the app at {self.host} did not answer within {timeout.read:.0f} s"
                    ) from None
                except httpx.HTTPError as err:
                    last = DrainError(f"drain call to {self.host} failed: {_reason(err)}")
                    continue
                if resp.status_code in RETRY_STATUSES:
                    last = DrainError(
                        f"the app at {self.host} answered {resp.status_code}", resp.status_code
                    )
                    continue
                return self._read(resp)
        assert last is not None
        raise last

    def _read(self, resp: httpx.Response) -> DrainResponse:
        status = resp.status_code
        detail = _detail(resp)
        if status == 401:
            raise DrainError(
                f"the app rejected the drain token (401 from {self.host}); "
                "check DRAIN_QUEUES_TOKEN / CRON_SECRET / CRON_TOKEN",
                status,
            )
        if status == 400:
            raise DrainError(f"the app refused the drain (400): {detail}", status)
        if status >= 500:
            raise DrainError(f"the app failed to drain ({status}): {detail}", status)
        if status != 200:
            raise DrainError(f"unexpected answer {status} from {self.host}: {detail}", status)
        try:
            body = DrainResponse.model_validate_json(resp.content)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "body"
            raise DrainError(
                f"the app's drain answer has an unexpected shape: {where}: {first.get('msg')}",
                status,
            ) from None
        if not body.ok:
            raise DrainError(f"the app answered ok=false: {detail}", status)
        return body


def _reason(err: Exception) -> str:
    """httpx's first line (it may quote the request URL, so without credentials)."""
    text = str(err) or type(err).__name__
    return hide_url_credentials(text.splitlines()[0])[:200]


def _detail(resp: httpx.Response) -> str:
    """What the app said, in one line (it may echo the URL it was called with)."""
    try:
        data = resp.json()
        if isinstance(data, dict) and data.get("error"):
            return _one_line(str(data["error"]))
    except ValueError:
        pass
    return _one_line(resp.text) or f"HTTP {resp.status_code}"


def _one_line(text: str) -> str:
    return hide_url_credentials(" ".join(text.split()))[:200]
