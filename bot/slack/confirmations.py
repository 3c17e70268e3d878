"""Pending confirmations: a preview's Confirm button, usable once, by the requester or an
admin, for a few minutes.

The button carries only a random token; what it runs (the words, who asked, where) is in
Redis under that token with an expiry. Taking it is one GETDEL, so two clicks (or two
replicas) can never run it twice.
"""

from __future__ import annotations

import secrets

from pydantic import BaseModel
from redis.asyncio import Redis

CONFIRM_TTL_S = 300


class Pending(BaseModel):
    words: list[str]
    requester: str
    channel: str | None
    command: str


class Confirmations:
    def __init__(self, redis: Redis, prefix: str, *, ttl_s: int = CONFIRM_TTL_S) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s

    def _key(self, token: str) -> str:
        return f"{self.prefix}:confirm:{token}"

    async def create(self, pending: Pending) -> str:
        token = secrets.token_urlsafe(18)
        await self.redis.set(self._key(token), pending.model_dump_json(), ex=self.ttl_s)
        return token

    async def peek(self, token: str) -> Pending | None:
        raw = await self.redis.get(self._key(token))
        return Pending.model_validate_json(raw) if raw else None

    async def take(self, token: str) -> Pending | None:
        """Consume it: the first caller gets it, every later one gets None."""
        raw = await self.redis.getdel(self._key(token))
        return Pending.model_validate_json(raw) if raw else None
