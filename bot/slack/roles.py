"""Who may do what in Slack: QUEUEOPS_ROLES grants, with user groups resolved through
`usergroups.users.list` and cached briefly (membership changes rarely; Slack rate-limits)."""

from __future__ import annotations

import asyncio
import logging
import time

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics
from bot.roles import Role, RoleGrants

log = logging.getLogger(__name__)


def slack_error(err: SlackApiError) -> str:
    """Slack's error code ("not_in_channel"), or the HTTP status when the body is not JSON."""
    data = err.response.data
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return f"HTTP {err.response.status_code}"


GROUP_CACHE_SECONDS = 60.0


class RoleResolver:
    def __init__(
        self, grants: RoleGrants, client: AsyncWebClient, *, ttl_s: float = GROUP_CACHE_SECONDS
    ) -> None:
        self.grants = grants
        self.client = client
        self.ttl_s = ttl_s
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._reading: dict[str, asyncio.Task[frozenset[str]]] = {}

    async def _members_of(self, group: str) -> frozenset[str]:
        """One read of a group at a time: fifty commands at once with a cold cache would be
        fifty usergroups.users.list calls (Slack allows about 20 a minute), and those waiting
        on the same read resume in the order they asked, so their commands keep their order."""
        cached = self._members.get(group)
        if cached and time.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        reading = self._reading.get(group)
        if reading is None:
            reading = asyncio.create_task(self._read(group))
            self._reading[group] = reading
            reading.add_done_callback(lambda _: self._reading.pop(group, None))
        return await asyncio.shield(reading)  # one asker cancelled stops no one else's read

    def _groups(self) -> set[str]:
        return {p for p in self.grants.all_members() if p[0] == "S"}

    async def _read(self, group: str) -> frozenset[str]:
        cached = self._members.get(group)
        try:
            resp = await self.client.usergroups_users_list(usergroup=group)
            members = frozenset(resp.get("users") or [])
        except SlackApiError as err:
            # Fail closed: a group we cannot read grants nothing this time.
            metrics.SLACK_ERRORS.labels("usergroups.users.list").inc()
            log.warning("roles: cannot read user group %s: %s", group, slack_error(err))
            return cached[1] if cached else frozenset()
        self._members[group] = (time.monotonic(), members)
        return members

    async def role_of(self, user_id: str, env: str | None = None) -> Role:
        """The user's role in environment `env` (None: the unscoped grants only)."""
        principals = {user_id}
        for group in self._groups():
            if user_id in await self._members_of(group):
                principals.add(group)
        return self.grants.role_of(principals, env)
