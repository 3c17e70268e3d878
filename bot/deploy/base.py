"""What every backend offers, and the diff a switch previews."""

from __future__ import annotations

import re
from typing import Protocol

_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|KEY|URL|DSN|CREDENTIAL)", re.IGNORECASE)


class Backend(Protocol):
    name: str

    async def read(self) -> dict[str, str]:
        """The app's environment as it is now."""

    async def write(self, expected: dict[str, str], changes: dict[str, str | None]) -> None:
        """Apply `changes` (None removes) to the environment, refusing if it is no longer
        `expected` (someone changed it since the preview); return once it is live."""


class EnvironmentChanged(Exception):
    """The environment changed between the preview and the write: nothing was written."""


def redact(name: str, value: str | None) -> str:
    if value is None:
        return "(unset)"
    if name == "WORKER_INPROCESS":
        return value
    if _SECRET_NAME.search(name) or len(value) > 24:
        return "***" + (f" ({len(value)} chars)" if value else "")
    return value


def diff(before: dict[str, str], changes: dict[str, str | None]) -> list[tuple[str, str, str]]:
    """(name, before, after) for the variables that change, secrets redacted."""
    rows = []
    for name, after in changes.items():
        if before.get(name) != after:
            rows.append((name, redact(name, before.get(name)), redact(name, after)))
    return rows


def apply_changes(env: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    out = dict(env)
    for name, value in changes.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out
