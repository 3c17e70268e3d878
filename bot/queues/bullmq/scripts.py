"""Our Lua scripts, loaded from `lua/` and registered once per Redis client.

redis-py's Script sends EVALSHA and falls back to SCRIPT LOAD only when the server does not
know the script yet, so steady state is one command per call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

_INCLUDE = re.compile(r'^--- @include "([a-z_]+)"$', re.MULTILINE)


def _load(name: str) -> str:
    """The script's text, each `--- @include "x"` line replaced by lua/includes/x.lua.

    Redis has no include of its own; npm bullmq splices its shared Lua with the same
    marker when it builds its scripts. replay.lua and replay_one.lua share how a job goes
    back into its queue this way, so the layout npm bullmq expects is written once."""
    lua = resources.files("bot.queues.bullmq").joinpath("lua")
    text = lua.joinpath(f"{name}.lua").read_text("utf-8")
    return _INCLUDE.sub(
        lambda found: lua.joinpath("includes", f"{found.group(1)}.lua").read_text("utf-8"), text
    )


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
