"""The Dispatcher: how every transport runs a command.

It builds the command's context for the person asking, applies the per-user rate limit to
commands that change things, runs the command, and records metrics and the audit trail
(reads that went well only with QUEUEOPS_AUDIT_READS: see bot/audit.py).
It also knows how many commands are in flight, so `serve` can let them finish on SIGTERM.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from bot.audit import AuditEntry, AuditLog, redact_text, redact_words
from bot.config import Settings
from bot.drain import DrainClient
from bot.errors import Refused
from bot.queues.samples import sample_key_base
from bot.queues.service import QueueService
from bot.ratelimit import RateLimiter
from bot.roles import Role
from commands.context import CommandContext
from commands.incident_desk import IncidentDesk
from commands.registry import Command, resolve
from commands.runner import Outcome, execute
from scheduler.state import CronState, Mode

if TYPE_CHECKING:
    from bot.queues.postgres.backend import PostgresBackend


@dataclass
class Dispatcher:
    service: QueueService
    settings: Settings
    audit: AuditLog | None = None
    limiter: RateLimiter | None = None
    cron: CronState | None = None
    drain: DrainClient | None = None
    metrics: bool = True
    """Count commands in bot/metrics.py's Prometheus metrics (not in a one-shot CLI run:
    nothing would read them, and prometheus_client is 10% of such a run)."""
    incidents: IncidentDesk | None = None
    """The incident desk the `incident` commands use; set by `serve` when Slack is on."""
    _in_flight: int = field(default=0, init=False)
    _idle: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    def __post_init__(self) -> None:
        self._idle.set()

    async def run(
        self,
        words: Sequence[str],
        *,
        actor: str,
        role: Role,
        transport: str,
        channel: str | None = None,
        confirmed: bool = True,
        terminal: bool = False,
    ) -> Outcome:
        ctx = CommandContext(
            queues=self.service,
            settings=self.settings,
            actor=actor,
            role=role,
            cron=self.cron,
            drain=self.drain,
            incidents=self.incidents,
            channel=channel,
        )
        async with self.tracking():
            outcome = await execute(
                words, ctx, confirmed=confirmed, gate=self._gate, terminal=terminal
            )
        if self.metrics:
            count(outcome, transport)
        if self.audit is not None:
            message = getattr(outcome.reply, "message", None)
            await self.audit.record(
                AuditEntry(
                    at_ms=AuditLog.now_ms(),
                    actor=actor,
                    role=role.label,
                    transport=transport,
                    channel=channel,
                    words=redact_words(words),
                    command=outcome.command,
                    outcome=outcome.label,
                    message=redact_text(message) if message else None,
                    duration_ms=int(outcome.seconds * 1000),
                    jobs=outcome.reply.jobs_moved() or None,
                ),
                redis_down=outcome.redis_error,
                read=went_well_and_changed_nothing(outcome),
            )
        return outcome

    async def _gate(self, command: Command, ctx: CommandContext) -> None:
        if self.limiter is None or command.role < Role.OPERATOR:
            return
        wait = await self.limiter.wait_seconds(ctx.actor)
        if wait:
            raise Refused(
                f"slow down: at most {self.limiter.per_minute} operator commands a minute "
                f"per person; try again in {wait} s"
            )

    @asynccontextmanager
    async def tracking(self) -> AsyncIterator[None]:
        """Count work in flight (a command, and the reply a transport sends after it)."""
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def wait_idle(self, grace_s: float) -> bool:
        """Wait until no command runs (for a clean shutdown); False if time ran out."""
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
            return True
        except TimeoutError:
            return False


def count(outcome: Outcome, transport: str) -> None:
    from bot import metrics  # here: a CLI run records none (Dispatcher.metrics)

    name = outcome.command or "unknown"
    metrics.COMMANDS.labels(name, outcome.label, transport).inc()
    metrics.COMMAND_SECONDS.labels(name).observe(outcome.seconds)
    if outcome.redis_error:
        metrics.REDIS_ERRORS.inc()


def went_well_and_changed_nothing(outcome: Outcome) -> bool:
    """A read: a command open to viewers (they may change nothing, by design: bot/roles.py)
    that succeeded. A failed or refused one, a preview and every change are not reads."""
    if outcome.command is None or outcome.label != "ok":
        return False
    command, _ = resolve(outcome.command.split())
    return command.role <= Role.VIEWER


def default_mode(settings: Settings) -> Mode:
    """The worker mode before anyone switched it: the backend's
    WORKER_INPROCESS (unset or 1 is always-on, 0 is cron); backend none starts as cron;
    App Runner's is read when a switch previews it, always-on until then (the app's
    default)."""
    if settings.worker_mode_backend == "none":
        return "cron"
    if settings.worker_mode_backend == "dotenv" and settings.worker_mode_dotenv is not None:
        try:
            for line in settings.worker_mode_dotenv.read_text().splitlines():
                name, sep, value = line.partition("=")
                if sep and name.strip().removeprefix("export ").strip() == "WORKER_INPROCESS":
                    return "cron" if value.strip().strip("\"'") == "0" else "always-on"
        except OSError:
            pass
    return "always-on"


def cron_state(redis: Redis, settings: Settings) -> CronState:
    return CronState(
        redis,
        settings.state_prefix,
        default_mode=default_mode(settings),
        default_every_ms=settings.drain_every_ms,
    )


def drain_token_key(settings: Settings) -> str:
    return f"{settings.state_prefix}:drain-token"


def drain_client(settings: Settings, redis: Redis) -> DrainClient | None:
    """The drain endpoint's client; a token rotated by `rotate-token` (kept in Redis) wins
    over DRAIN_QUEUES_TOKEN / CRON_SECRET / CRON_TOKEN."""
    if settings.drain_url is None:
        return None
    token = settings.drain_token
    key = drain_token_key(settings)

    async def rotated() -> str | None:
        value = await redis.get(key)
        return str(value) if value else None

    return DrainClient(
        settings.drain_url, token.get_secret_value() if token else None, token_source=rotated
    )


def postgres_backend(settings: Settings) -> PostgresBackend | None:
    """The DB queue QUEUE_JOBS_DATABASE_URL names; psycopg is imported only then (a run
    without one, the CLI's one-shot above all, does not pay for it)."""
    if settings.queue_jobs_database_url is None:
        return None
    from bot.queues.postgres.backend import PostgresBackend

    return PostgresBackend.from_settings(settings)


def make_dispatcher(
    redis: Redis, settings: Settings, *, rate_limited: bool, metrics: bool = True
) -> Dispatcher:
    """The Dispatcher every entry point uses: queues, audit, cron state, drain client; the
    per-person rate limit for chat (the terminal is trusted); Prometheus metrics unless
    `metrics=False` (a one-shot CLI run)."""
    service = QueueService(
        redis,
        prefixes=settings.prefixes,
        dlq_suffix=settings.dlq_suffix,
        queues=settings.queues,
        rediscover_ms=settings.discover_every_ms,
        postgres=postgres_backend(settings),
        readonly=settings.readonly,
        sample_key_base=sample_key_base(settings.state_prefix),
    )
    limiter = (
        RateLimiter(redis, settings.state_prefix, per_minute=settings.operator_rate_per_minute)
        if rate_limited
        else None
    )
    return Dispatcher(
        service,
        settings,
        audit=AuditLog(redis, f"{settings.state_prefix}:audit", audit_reads=settings.audit_reads),
        limiter=limiter,
        cron=cron_state(redis, settings),
        drain=drain_client(settings, redis),
        metrics=metrics,
    )
