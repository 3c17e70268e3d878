"""Several Redis deployments (QUEUEOPS_REDIS_URLS): each environment's client, settings and
Dispatcher, and how a command's words pick one (`--env NAME`).

Every entry point (the CLI, the shell, Slack) runs commands through `Environments`. An
environment is connected the first time a command runs in it (a CLI call connects only to
the one it uses), and all are closed together. A command runs in one environment: the one
`--env` names, else the default one; only `snapshot` without `--env`, when there are several
environments, runs in each and answers with all of them (commands/snapshot.py's
MultiEnvSnapshotReply). With one environment everything is exactly as without this module.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from bot.config import Settings
from bot.dispatch import Dispatcher, make_dispatcher
from bot.errors import UsageError
from bot.redis_client import connect
from bot.roles import Role
from commands.registry import resolve
from commands.reply import Reply
from commands.runner import Outcome

ENV_FLAG = "--env"


def split_env(words: Sequence[str]) -> tuple[str | None, list[str]]:
    """(the environment `--env NAME` / `--env=NAME` names, the words without it), anywhere
    in the words; not checked against the known environments (`Environments.pick` is)."""
    env: str | None = None
    rest: list[str] = []
    items = list(words)
    i = 0
    while i < len(items):
        word = items[i]
        if word == ENV_FLAG or word.startswith(f"{ENV_FLAG}="):
            if word == ENV_FLAG:
                if i + 1 >= len(items) or items[i + 1].startswith("-"):
                    raise UsageError("--env needs an environment's name (--env staging)")
                value = items[i + 1]
                i += 2
            else:
                value = word.partition("=")[2]
                i += 1
            if not value:
                raise UsageError("--env needs an environment's name (--env staging)")
            if env is not None and env != value:
                raise UsageError(f"--env is given twice ({env}, {value}); give one")
            env = value
            continue
        rest.append(word)
        i += 1
    return env, rest


@dataclass
class Env:
    """One environment, connected."""

    name: str
    redis: Redis
    settings: Settings
    dispatcher: Dispatcher


RoleIn = Callable[[str], Awaitable[Role]]
"""The asker's role in an environment (Slack: QUEUEOPS_ROLES with `@env` scopes)."""


class Environments:
    def __init__(
        self,
        settings: Settings,
        *,
        client_name: str | None = None,
        rate_limited: bool,
        metrics: bool = True,
    ) -> None:
        self.settings = settings
        self.client_name = client_name
        self.rate_limited = rate_limited
        self.metrics = metrics
        self._envs: dict[str, Env] = {}
        self._connecting: dict[str, asyncio.Lock] = {}

    @property
    def names(self) -> list[str]:
        return self.settings.environments

    @property
    def default(self) -> str:
        return self.settings.default_env

    @property
    def several(self) -> bool:
        return len(self.names) > 1

    def adopt(self, env: Env) -> None:
        """An environment already connected (`queueops serve` connects the default one
        itself, to wire Slack, alerts and the watcher on it)."""
        self._envs[env.name] = env

    def connected(self) -> list[Env]:
        return list(self._envs.values())

    def check(self, name: str | None) -> str:
        """`name`, or the default environment for None; UsageError for an unknown one."""
        if name is None:
            return self.default
        if name not in self.names:
            raise UsageError(f"unknown environment '{name[:40]}' (known: {', '.join(self.names)})")
        return name

    def pick(self, words: Sequence[str]) -> tuple[str | None, list[str]]:
        """(the environment `--env` names, checked; None without it, the words without it)."""
        env, rest = split_env(words)
        return (None if env is None else self.check(env)), rest

    async def get(self, name: str) -> Env:
        """The environment `name`, connected on first use."""
        name = self.check(name)
        if name in self._envs:
            return self._envs[name]
        lock = self._connecting.setdefault(name, asyncio.Lock())
        async with lock:
            if name not in self._envs:
                redis, settings = await connect(
                    self.settings.for_env(name), client_name=self.client_name
                )
                dispatcher = make_dispatcher(
                    redis, settings, rate_limited=self.rate_limited, metrics=self.metrics
                )
                self._envs[name] = Env(name, redis, settings, dispatcher)
        return self._envs[name]

    async def dispatcher(self, name: str | None = None) -> Dispatcher:
        return (await self.get(self.check(name))).dispatcher

    def spans_all(self, env: str | None, words: Sequence[str]) -> bool:
        """The words run in every environment: `snapshot` without `--env`, several envs."""
        if env is not None or not self.several:
            return False
        try:
            command, _ = resolve(words)
        except UsageError:
            return False
        return command.name == "snapshot" and not any(w in ("-h", "--help") for w in words)

    async def run(
        self,
        env: str | None,
        words: Sequence[str],
        *,
        role_in: RoleIn,
        actor: str,
        transport: str,
        channel: str | None = None,
        confirmed: bool = True,
        terminal: bool = False,
    ) -> Outcome:
        """Run `words` (without `--env`) in `env` (None: the default one, or every one for a
        snapshot when there are several)."""

        async def one(name: str) -> Outcome:
            return await (await self.dispatcher(name)).run(
                words,
                actor=actor,
                role=await role_in(name),
                transport=transport,
                channel=channel,
                confirmed=confirmed,
                terminal=terminal,
            )

        if not self.spans_all(env, words):
            return await one(self.check(env))
        from commands.snapshot import MultiEnvSnapshotReply

        started = time.perf_counter()
        outcomes = await asyncio.gather(*(one(name) for name in self.names))
        replies: dict[str, Reply] = {
            name: o.reply for name, o in zip(self.names, outcomes, strict=True)
        }
        return Outcome(
            command=outcomes[0].command,
            reply=MultiEnvSnapshotReply(
                ok=all(r.ok for r in replies.values()), environments=replies
            ),
            seconds=time.perf_counter() - started,
            redis_error=any(o.redis_error for o in outcomes),
        )

    async def aclose(self) -> None:
        envs, self._envs = list(self._envs.values()), {}
        for env in envs:
            await env.dispatcher.service.aclose()
            await env.redis.aclose()
