"""Our Lua scripts, loaded from `lua/` and registered once per Redis client.

redis-py's Script sends EVALSHA and falls back to SCRIPT LOAD only when the server does not
know the script yet, so steady state is one command per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


def _load(name: str) -> str:
    return resources.files("bot.queues.bullmq").joinpath("lua", f"{name}.lua").read_text("utf-8")


@dataclass(frozen=True)
class Scripts:
    snapshot: AsyncScript
    probe: AsyncScript
    quarantine: AsyncScript
    quarantine_failed: AsyncScript
    failed_page: AsyncScript
    replay: AsyncScript
    replay_one: AsyncScript
    pause: AsyncScript
    promote_due: AsyncScript
    scan_page: AsyncScript
    empty_list: AsyncScript

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        loaded: dict[str, Any] = {
            name: redis.register_script(_load(name))
            for name in (
                "snapshot",
                "probe",
                "quarantine",
                "quarantine_failed",
                "failed_page",
                "promote_due",
                "replay",
                "replay_one",
                "pause",
                "scan_page",
                "empty_list",
            )
        }
        return cls(**loaded)
