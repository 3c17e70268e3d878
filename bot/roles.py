"""Roles and the grants parsed from QUEUEOPS_ROLES.

`admin=U1,U2;operator=S0GROUP;viewer=*` grants Slack user ids (U…/W…) and user-group ids
(S…) a role; `*` grants it to everyone. Roles are ordered: an admin may do what an operator
may, an operator what a viewer may.

A grant may be scoped to one environment of QUEUEOPS_REDIS_URLS: `admin@prod=U1;operator=U1`
makes U1 an admin in prod and an operator everywhere else. A person's role in an environment
is the highest of their unscoped grant and their grant there. A `viewer=` clause restricts
viewers everywhere, a `viewer@E=` clause only in E.
"""

from __future__ import annotations

import re
from enum import IntEnum

from pydantic import BaseModel, ConfigDict

ENV_NAME = re.compile(r"[a-z0-9-]{1,32}")
"""An environment's name (QUEUEOPS_REDIS_URLS, `admin@prod`): fullmatch it."""
_PRINCIPAL = re.compile(r"\*|[UWS][A-Z0-9]{2,}")  # fullmatch: "$" would allow a final newline


class Role(IntEnum):
    """What a command demands; higher includes lower."""

    ANYONE = 0
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class RoleGrants(BaseModel):
    """Who is granted which role; user groups are resolved by the Slack transport."""

    model_config = ConfigDict(frozen=True)

    grants: dict[Role, frozenset[str]] = {}
    scoped: dict[str, dict[Role, frozenset[str]]] = {}
    """Grants that hold in one environment only (`admin@prod=U1`), by environment."""

    @classmethod
    def parse(cls, text: str | None) -> RoleGrants:
        """Parse the QUEUEOPS_ROLES syntax; raise ValueError naming the bad part."""
        grants: dict[Role, frozenset[str]] = {}
        scoped: dict[str, dict[Role, frozenset[str]]] = {}
        if not text or not text.strip():
            return cls(grants={})
        for clause in filter(None, (c.strip() for c in text.split(";"))):
            role_name, sep, members = clause.partition("=")
            if not sep:
                raise ValueError(f"'{clause}' is not role=ids (e.g. admin=U123,U456)")
            role_name, at, env = role_name.partition("@")
            env = env.strip()
            if at and not ENV_NAME.fullmatch(env):
                raise ValueError(
                    f"'{role_name.strip()}@{env}': '{env}' is not an environment name "
                    "(lowercase letters, digits, -)"
                )
            try:
                role = Role[role_name.strip().upper()]
            except KeyError:
                raise ValueError(
                    f"unknown role '{role_name.strip()}' (use admin, operator or viewer)"
                ) from None
            if role is Role.ANYONE:
                raise ValueError("role 'anyone' cannot be granted; it is everyone already")
            ids = [m.strip() for m in members.split(",") if m.strip()]
            for principal in ids:
                if not _PRINCIPAL.fullmatch(principal):
                    raise ValueError(
                        f"'{principal}' is not a Slack user id (U…), user-group id (S…) or *"
                    )
            into = scoped.setdefault(env, {}) if at else grants
            into[role] = into.get(role, frozenset()) | frozenset(ids)
        return cls(grants=grants, scoped=scoped)

    def environments(self) -> list[str]:
        """The environments grants are scoped to."""
        return list(self.scoped)

    def all_members(self) -> set[str]:
        """Every id granted anything, in any environment (user groups to resolve)."""
        every = [*self.grants.values()]
        for grants in self.scoped.values():
            every += grants.values()
        return {p for members in every for p in members}

    def _in(self, env: str | None) -> dict[Role, frozenset[str]]:
        """The grants that hold in `env`: the unscoped ones and those scoped to it."""
        if env is None or env not in self.scoped:
            return self.grants
        merged = dict(self.grants)
        for role, members in self.scoped[env].items():
            merged[role] = merged.get(role, frozenset()) | members
        return merged

    def role_of(self, principals: set[str], env: str | None = None) -> Role:
        """The highest role granted to a user known by these ids (user id and group ids),
        in environment `env` (None: unscoped grants only)."""
        grants = self._in(env)
        best = Role.ANYONE
        for role, members in grants.items():
            if role > best and ("*" in members or principals & members):
                best = role
        if Role.VIEWER not in grants and best < Role.VIEWER:
            # Viewer commands are open to everyone unless viewers are restricted explicitly.
            best = Role.VIEWER
        return best

    def origin(self, principals: set[str] | None = None, env: str | None = None) -> str:
        """Where `role_of(principals)` comes from, for a person: "QUEUEOPS_ROLES", or the
        default and why ("default: QUEUEOPS_ROLES unset"). Without principals: whether the
        grants say anything at all."""
        if not self.grants and not self.scoped:
            return "default: QUEUEOPS_ROLES unset"
        if principals is None:
            return "QUEUEOPS_ROLES"
        role = self.role_of(principals, env)
        members = self._in(env).get(role, frozenset())
        if "*" in members or principals & members:
            return "QUEUEOPS_ROLES"
        return "default: not in QUEUEOPS_ROLES"
