"""`WORKER_MODE_BACKEND=none`: report only. The mode lives in queueops' own state; the app's
environment is someone else's to change."""

from __future__ import annotations


class NoneBackend:
    name = "none"

    async def read(self) -> dict[str, str]:
        return {}

    async def write(self, expected: dict[str, str], changes: dict[str, str | None]) -> None:
        return None
