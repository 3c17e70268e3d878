"""`WORKER_MODE_BACKEND=apprunner`: AWS App Runner, through boto3.

update_service replaces the whole RuntimeEnvironmentVariables object, so a switch reads the
service, changes only its own variables, re-reads just before writing and aborts if anything
changed since the preview, sends the whole set back, and follows the operation until
SUCCEEDED. boto3 is synchronous: its calls run in a thread.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bot.deploy.base import EnvironmentChanged, apply_changes
from bot.errors import OperationFailed

POLL_S = 10.0
DEADLINE_S = 20 * 60


class AppRunnerBackend:
    name = "apprunner"

    def __init__(self, service_arn: str, client: Any, *, poll_s: float = POLL_S) -> None:
        self.arn = service_arn
        self.client = client
        self.poll_s = poll_s

    @classmethod
    def from_settings(cls, service_arn: str, region: str | None) -> AppRunnerBackend:
        import boto3

        return cls(service_arn, boto3.client("apprunner", region_name=region))

    def _source(self) -> dict[str, Any]:
        service = self.client.describe_service(ServiceArn=self.arn)["Service"]
        source: dict[str, Any] = service["SourceConfiguration"]
        return source

    @staticmethod
    def _env(source: dict[str, Any]) -> dict[str, str]:
        image = source.get("ImageRepository", {}).get("ImageConfiguration", {})
        return dict(image.get("RuntimeEnvironmentVariables") or {})

    async def read(self) -> dict[str, str]:
        return self._env(await asyncio.to_thread(self._source))

    async def write(self, expected: dict[str, str], changes: dict[str, str | None]) -> None:
        await asyncio.to_thread(self._write, expected, changes)

    def _write(self, expected: dict[str, str], changes: dict[str, str | None]) -> None:
        source = self._source()
        if self._env(source) != expected:
            raise EnvironmentChanged(
                "the App Runner service's variables changed since the preview; nothing written"
            )
        image = source["ImageRepository"].setdefault("ImageConfiguration", {})
        image["RuntimeEnvironmentVariables"] = apply_changes(expected, changes)
        # AutoDeploymentsEnabled/AuthenticationConfiguration are part of the same object and
        # go back as they were: only the variables differ.
        operation = self.client.update_service(ServiceArn=self.arn, SourceConfiguration=source)[
            "OperationId"
        ]
        self._follow(operation)

    def _follow(self, operation: str) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            ops = self.client.list_operations(ServiceArn=self.arn, MaxResults=5)
            status = next(
                (o["Status"] for o in ops.get("OperationSummaryList", []) if o["Id"] == operation),
                "PENDING",
            )
            if status == "SUCCEEDED":
                return
            if status in ("FAILED", "ROLLBACK_SUCCEEDED", "ROLLBACK_FAILED"):
                raise OperationFailed(f"App Runner operation {operation} ended {status}")
            if time.monotonic() > deadline:
                raise OperationFailed(
                    f"App Runner operation {operation} still {status} after {DEADLINE_S // 60} min"
                )
            time.sleep(self.poll_s)
