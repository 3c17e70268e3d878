"""`queueops serve`: one aiohttp app on one event loop: Slack (HTTP or Socket Mode), health,
readiness and metrics. Later issues plug in alert intake and the drain cron here.

Nothing here polls: /healthz touches nothing, /readyz checks Redis and Slack only when asked
(and caches the answer briefly, so a platform health check cannot burn the Redis budget),
and an idle process sends no Redis command at all.

Several Redis deployments (QUEUEOPS_REDIS_URLS): Slack commands run in the environment
`--env` names (bot/environments.py), and every environment has its own tick (one command
when idle) whose drain cron runs when it has a drain endpoint (DRAIN_URL for the default
one, DRAIN_URL_<ENV> for the others). Slack's confirmations, the alert intake, incidents,
the watcher, readiness and the depth charts stay on the default environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.intake import AlertIntake
from bot.alerts.models import AlertEvent
from bot.alerts.stream import GROUP, AlertStream, StreamStats
from bot.alerts.watcher import Watcher, WatchRules
from bot.alerts.worker import AlertWorker
from bot.audit import AuditEntry
from bot.charts import DepthChart
from bot.config import Settings
from bot.deploy.select import backend_for
from bot.dispatch import Dispatcher, make_dispatcher
from bot.environments import Env, Environments
from bot.errors import QueueOpsError, RedisQuotaExhausted
from bot.incidents.actions import IncidentActions
from bot.incidents.channels import Incidents
from bot.incidents.desk import SlackIncidentDesk
from bot.incidents.digest import Digest, parse_digest_at
from bot.incidents.header import IncidentLinks
from bot.incidents.paging import PagerDutyPager
from bot.incidents.postmortem import ImpactSample, SnapshotSeen
from bot.incidents.reminders import Reminders, parse_update_every
from bot.incidents.shortcuts import IncidentShortcuts
from bot.metrics import ALERTS_DEAD_LETTERED, ALERTS_UNHANDLED, QueueGauges
from bot.queues.bullmq.probe import Extra
from bot.queues.bullmq.slots import is_cluster_client
from bot.queues.models import ProbeResult
from bot.queues.samples import DepthSamples, sample_key_base
from bot.queues.service import QueueService
from bot.redis_client import connect, make_wake_client
from bot.slack.app import SlackHandlers, build_bolt_app
from bot.slack.blocks import escape
from bot.slack.confirmations import Confirmations
from bot.slack.home import AppHome
from bot.slack.roles import RoleResolver, slack_error
from bot.slack.slash import SlashCommands
from commands.registry import all_commands
from commands.snapshot import snapshot_view_and_queues
from scheduler.cron import FAILURES_BEFORE_ALERT, DrainCron
from scheduler.instant import InstantDrain
from scheduler.state import Mode
from scheduler.ticker import Ticker

log = logging.getLogger("queueops.serve")

READY_CACHE_S = 15.0
SHUTDOWN_GRACE_S = 25.0
MAX_BODY = 1024 * 1024


def slack_client(settings: Settings) -> AsyncWebClient:
    """The Web API client: SLACK_API_URL, and slack_sdk's retry handlers for 429 (honouring
    Retry-After), 5xx and dropped connections."""
    token = settings.slack_bot_token
    base = (
        settings.slack_api_url
        if settings.slack_api_url.endswith("/")
        else (settings.slack_api_url + "/")
    )
    client = AsyncWebClient(token=token.get_secret_value() if token else None, base_url=base)
    client.retry_handlers.extend(
        [
            AsyncRateLimitErrorRetryHandler(max_retry_count=2),
            AsyncServerErrorRetryHandler(max_retry_count=2),
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
        ]
    )
    return client


@dataclass
class Readiness:
    """GET /readyz: Redis answers PING and Slack answers auth.test, cached for a few seconds."""

    redis: Redis
    client: AsyncWebClient | None
    alerts: AlertStream | None = None
    _at: float = field(default=-1e9, init=False)
    _result: tuple[bool, dict[str, str]] = field(default=(False, {}), init=False)

    async def check(self) -> tuple[bool, dict[str, str]]:
        if time.monotonic() - self._at < READY_CACHE_S:
            return self._result
        parts: dict[str, str] = {}
        try:
            await self.redis.ping()
            parts["redis"] = "ok"
        except (RedisError, OSError) as err:
            parts["redis"] = (
                "request quota used up (Upstash-style limit): cron mode or a paid plan"
                if RedisQuotaExhausted.matches(err)
                else f"unreachable: {err}"
            )
        if self.client is None:
            parts["slack"] = "off"
        else:
            try:
                await self.client.auth_test()
                parts["slack"] = "ok"
            except SlackApiError as err:
                parts["slack"] = f"auth.test failed: {slack_error(err)}"
            except Exception as err:  # network: aiohttp's errors, timeouts
                parts["slack"] = f"unreachable: {type(err).__name__}: {err}"
        ok = all(v in ("ok", "off") for v in parts.values())
        if self.alerts is not None and parts["redis"] == "ok":
            # Reported, not failed on: taking the instance out of service would stop
            # intake too, while what is unhandled or parked needs Slack or a person.
            with contextlib.suppress(RedisError, OSError):
                note = alert_backlog_note(self.alerts, await self.alerts.stats())
                if note:
                    parts["alerts"] = note
        self._at, self._result = time.monotonic(), (ok, parts)
        return self._result


def alert_backlog_note(stream: AlertStream, stats: StreamStats) -> str:
    """What /readyz says about the alert stream when something waits: "" when nothing does.
    Also sets the gauges /metrics shows."""
    ALERTS_UNHANDLED.set(stats.unhandled)
    ALERTS_DEAD_LETTERED.set(stats.dead_lettered)
    said = []
    if stats.unhandled:
        said.append(f"{stats.unhandled} unhandled")
        if stats.unhandled >= stream.max_unhandled:
            said.append(f"intake answers 503 (over {stream.max_unhandled})")
    if stats.dead_lettered:
        said.append(f"{stats.dead_lettered} dead-lettered in {stream.dead_key}")
    return ", ".join(said)


DISPATCHER = web.AppKey("dispatcher", Dispatcher)
TICKER = web.AppKey("ticker", Ticker)
INSTANT = web.AppKey("instant", InstantDrain)
"""The instant drains, when on (DRAIN_INSTANT with a DRAIN_URL)."""
READINESS = web.AppKey("readiness", Readiness)
HOME = web.AppKey("app_home", AppHome)
"""The App Home of the app, when Slack is on (tests read its counts)."""
DIGEST = web.AppKey("digest", Digest)
"""The daily digest, when INCIDENT_DIGEST_AT is set (tests set its clock)."""


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    ok, parts = await request.app[READINESS].check()
    return web.json_response({"ok": ok, **parts}, status=200 if ok else 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    stream = request.app[READINESS].alerts
    if stream is not None:  # the alert gauges, read now (a scrape, never a poll)
        with contextlib.suppress(RedisError, OSError):
            alert_backlog_note(stream, await stream.stats())
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _slack_events(bolt: AsyncApp, slash: SlashCommands) -> Any:
    async def handle(request: web.Request) -> web.Response:
        # slack_sdk's verifier does int() on the timestamp: anything but digits would be a
        # ValueError, a 500. It is a request that is not signed right: 401, as Bolt says.
        stamp = request.headers.get("X-Slack-Request-Timestamp")
        if stamp is not None and not (stamp.isascii() and stamp.isdigit()):
            return web.json_response({"error": "invalid request"}, status=401)
        with slash.answering():  # `/queue` answered first, the rest by Bolt
            answer = slash.accept(await request.read(), request.headers)
            if answer is not None:
                return answer
            return await to_aiohttp_response(
                await bolt.async_dispatch(await to_bolt_request(request))
            )

    return handle


async def runnable_of(service: QueueService, queues: list[str]) -> list[str]:
    """The queues among these with work a drain would do now: one probe command."""
    return (await service.probe(queues)).runnable


def _alert_upkeep(
    worker: AlertWorker, incidents: Incidents, pending_at: int, archive_at: int
) -> Any:
    """On a tick that found pending alerts or channels due for archiving, and only then."""

    async def upkeep(result: ProbeResult) -> None:
        if result.extras[pending_at]:
            await worker.sweep()
        if result.extras[archive_at]:
            await incidents.archive_due()

    return upkeep


def _pager(settings: Settings, app: web.Application) -> PagerDutyPager | None:
    """PagerDuty when PAGERDUTY_ROUTING_KEY is set (docs/paging.md); its HTTP client is
    closed with the app."""
    if settings.pagerduty_routing_key is None:
        return None
    pager = PagerDutyPager(
        settings.pagerduty_routing_key.get_secret_value(), url=settings.pagerduty_url
    )
    app.on_cleanup.append(lambda _: pager.aclose())
    return pager


def _closing(incidents: Incidents) -> Callable[[web.Application], Awaitable[None]]:
    async def close(_: web.Application) -> None:
        await incidents.close()

    return close


def _timeline(incidents: Incidents) -> Any:
    """Every command run in an incident channel becomes part of that incident's timeline;
    the jobs it moved (quarantined, replayed) count in the postmortem's impact."""

    async def add(entry: AuditEntry) -> None:
        iid = await incidents.incident_of_channel(entry.channel) if entry.channel else None
        if iid:
            await incidents.add_to_timeline(
                iid,
                f"{entry.actor} ran `{entry.words}` → {entry.outcome}"
                + (f": {entry.message}" if entry.message else ""),
                entry.at_ms,
                jobs=entry.jobs,
            )

    return add


def _incident_snapshot(
    service: QueueService,
) -> Callable[[Sequence[str]], Awaitable[SnapshotSeen]]:
    """An incident channel's snapshot, with the depth and oldest age it saw (the
    postmortem's impact), from the one snapshot the status message takes anyway."""

    async def seen(queues: Sequence[str]) -> SnapshotSeen:
        blocks, snaps = await snapshot_view_and_queues(service, queues)
        return SnapshotSeen(blocks=blocks, sample=ImpactSample.of(snaps))

    return seen


def _depth_history(
    samples: DepthSamples, full_name: Callable[[str], Awaitable[str | None]]
) -> Callable[[Sequence[str]], Awaitable[list[tuple[int, int]]]]:
    """The incident's queues' depth over the last hour, summed per tick (one probe writes
    every queue's sample with the same time), from the samples the tick keeps; read once,
    at resolve. A queue unknown here (an alert's label) has none."""

    async def history(queues: Sequence[str]) -> list[tuple[int, int]]:
        totals: dict[int, int] = {}
        for queue in queues:
            full = await full_name(queue)
            if full is None:
                continue
            for at, depth in await samples.series(full):
                totals[at] = totals.get(at, 0) + depth
        return sorted(totals.items())

    return history


def _audit_to_channel(client: AsyncWebClient, channel: str) -> Any:
    async def post(entry: AuditEntry) -> None:
        where = f" in <#{entry.channel}>" if entry.channel else ""
        await client.chat_postMessage(
            channel=channel,
            text=f"{escape(entry.actor)} ({entry.role}, {entry.transport}){where}: "
            f"`{escape(entry.words)}` → {entry.outcome}"
            + (f": {escape(entry.message)}" if entry.message else "")
            + f" ({entry.duration_ms} ms)",
        )

    return post


class _NoGauges(QueueGauges):
    """Another environment's tick exports no per-queue metrics: their series have no
    environment label, and the same queue name in two environments would mix."""

    def export(self, result: ProbeResult) -> None:
        return None


@dataclass
class EnvTick:
    """Another environment's tick (not the default one's), with its drain cron."""

    env: Env
    ticker: Ticker
    cron: DrainCron | None = None
    instant: InstantDrain | None = None


ENV_TICKS = web.AppKey("env_ticks", list[EnvTick])
"""The ticks of the environments other than the default one (QUEUEOPS_REDIS_URLS)."""


def _drains(
    env: Env, ticker: Ticker, emit: Any, *, label: str | None
) -> tuple[DrainCron | None, InstantDrain | None]:
    """An environment's drain cron (and its instant drains, when on) on `ticker`, when the
    environment has a drain endpoint. K failed drain ticks in a row raise an alert through
    the alerts path, the next successful drain resolves it; `label` names the environment
    in that alert (None for the default one, whose alert is as it always was)."""
    settings, dispatcher = env.settings, env.dispatcher
    service = dispatcher.service
    if dispatcher.drain is None or dispatcher.cron is None:
        return None, None
    alerting = {"on": False}
    suffix, prefix = (f":{label}", f"{label}: ") if label else ("", "")

    async def drain_streak(streak: int, error: str | None) -> None:
        firing = streak >= FAILURES_BEFORE_ALERT
        if firing == alerting["on"]:
            return
        alerting["on"] = firing
        await emit(
            AlertEvent(
                source="watcher",
                group_key=f"watcher:drain:cron{suffix}",
                status="firing" if firing else "resolved",
                title=f"DrainFailing {label}" if label else "DrainFailing",
                summary=f"{prefix}{streak} drain ticks failed in a row: {error}" if firing else "",
                starts_at=datetime.now(UTC),
            )
        )

    cron = DrainCron(
        ticker,
        dispatcher.cron,
        dispatcher.drain,
        owner=f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}",
        all_queues=service.catalog.literal_names(),
        on_streak=drain_streak,
        promote_due=service.promote_due,
    )
    if not settings.drain_instant:
        return cron, None
    instant = InstantDrain(
        cron,
        ticker,
        lambda timeout_s: make_wake_client(
            settings, socket_timeout_s=timeout_s, cluster=is_cluster_client(env.redis)
        ),
        runnable=lambda queues: runnable_of(service, queues),
        debounce_ms=settings.drain_wake_debounce_ms,
        wake_max_ms=settings.drain_wake_max_ms,
    )
    return cron, instant


async def _stop_drains(
    ticker: Ticker, cron: DrainCron | None, instant: InstantDrain | None
) -> None:
    """Stop the instant drains, then the tick; once the tick in progress (it may be
    draining) is done, hand the lease over so the next replica drains from its next tick
    instead of waiting out our lease."""
    if instant is not None:
        await instant.stop()
    if await ticker.stop_and_wait(SHUTDOWN_GRACE_S) and cron is not None:
        await cron.release()


def _env_tick(env: Env, emit: Any) -> EnvTick:
    """Another environment's own tick: one command when idle, its drain cron when it has
    a drain endpoint."""
    ticker = Ticker(
        env.dispatcher.service,
        every_ms=env.settings.drain_every_ms,
        sample_key_base=sample_key_base(env.settings.state_prefix),
    )
    ticker.gauges = _NoGauges()
    cron, instant = _drains(env, ticker, emit, label=env.name)
    return EnvTick(env, ticker, cron, instant)


async def build_app(settings: Settings) -> web.Application:
    envs = Environments(settings, client_name="queueops-serve", rate_limited=True)
    everything = settings
    settings = settings.for_env(settings.default_env)
    redis, settings = await connect(settings, client_name="queueops-serve")
    dispatcher = make_dispatcher(redis, settings, rate_limited=True)
    service = dispatcher.service
    audit = dispatcher.audit
    assert audit is not None
    stream = AlertStream(
        redis, f"{settings.state_prefix}:alerts", consumer=f"{socket.gethostname()}-{os.getpid()}"
    )
    worker: AlertWorker | None = None
    samples = sample_key_base(settings.state_prefix)
    ticker = Ticker(service, every_ms=settings.drain_every_ms, sample_key_base=samples)

    async def full_name(word: str) -> str | None:
        try:
            return (await service.require_queue(word)).full
        except QueueOpsError:
            return None

    chart = DepthChart(redis, samples, full_name)

    async def emit(event: AlertEvent) -> None:
        """The watcher's alerts take Alertmanager's path: the stream, then the worker."""
        await stream.append(event)
        if worker is not None:
            worker.wake()

    default = Env(settings.env_name, redis, settings, dispatcher)
    envs.adopt(default)
    cron, instant = _drains(default, ticker, emit, label=None)
    rules = WatchRules.from_settings(settings)
    ticker.add_hook(Watcher(rules, emit, redis, settings.state_prefix).on_tick)
    env_ticks = [_env_tick(await envs.get(name), emit) for name in everything.environments[1:]]
    app = web.Application(client_max_size=MAX_BODY)
    intake = AlertIntake(
        stream,
        settings.alert_webhook_token.get_secret_value() if settings.alert_webhook_token else None,
        on_stored=lambda: worker.wake() if worker is not None else None,
    )
    app.router.add_post("/alerts/alertmanager", intake.alertmanager)
    app.router.add_post("/alerts/generic", intake.generic)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    app[DISPATCHER] = dispatcher

    client: AsyncWebClient | None = None
    socket_handler: Any = None
    if settings.slack_enabled:
        client = slack_client(settings)
        handlers = SlackHandlers(
            dispatcher,
            Confirmations(redis, settings.state_prefix),
            RoleResolver(settings.roles, client),
            client,
            envs=envs,
        )
        app.on_cleanup.append(lambda _: handlers.close())  # the response_url session
        bolt = build_bolt_app(settings, handlers, client)
        incidents = Incidents(
            redis,
            client,
            state_prefix=settings.state_prefix,
            chart=chart.png,
            invite=settings.incident_invite or (),
            archive_after_ms=settings.incident_archive_after_ms,
            snapshot_view=_incident_snapshot(service),
            depth_history=_depth_history(DepthSamples(redis, samples), full_name),
            drain_available=lambda: any(c.name == "drain" for c in all_commands()),
            pager=_pager(settings, app),
            page_severity=settings.page_severity,
            links=IncidentLinks(
                runbook_url=settings.incident_runbook_url,
                runbooks=settings.incident_runbooks,
                dashboard_url=settings.grafana_url,
            ),
        )
        app.on_cleanup.append(_closing(incidents))  # its background page retries
        worker = AlertWorker(stream, incidents)
        pending_at = ticker.add_extra(Extra("xpending", stream.key, (GROUP,)))
        archive_at = ticker.add_extra(Extra("zdue", f"{settings.state_prefix}:archive", ("now",)))
        ticker.add_hook(_alert_upkeep(worker, incidents, pending_at, archive_at))
        every = parse_update_every(settings.incident_update_every)
        if every:  # counted in the tick's own command: no extra one (reminders.py)
            reminders = Reminders(incidents, client, every)
            reminders.index = ticker.add_extra(reminders.extra())
            ticker.add_hook(reminders.on_tick)
        desk = SlackIncidentDesk(
            incidents, client, updates_channel=settings.incident_updates_channel
        )
        dispatcher.incidents = desk
        IncidentShortcuts(dispatcher, incidents, desk, handlers.roles, client).register(bolt)
        IncidentActions(dispatcher, incidents, handlers.roles, client).register(bolt)
        # The App Home tab and the daily digest (bot/slack/home.py, bot/incidents/digest.py):
        # the digest's hook reads the local clock, so an idle tick sends nothing more.
        app[HOME] = AppHome(dispatcher, incidents, handlers.roles, client)
        app[HOME].register(bolt)
        digest_at = parse_digest_at(settings.incident_digest_at or "")
        if digest_at is not None and settings.incident_updates_channel:
            app[DIGEST] = Digest(
                incidents,
                dispatcher,
                client,
                channel=settings.incident_updates_channel,
                at=digest_at,
            )
            ticker.add_hook(app[DIGEST].on_tick)
        audit.listeners.append(_timeline(incidents))
        if settings.audit_channel:
            audit.listeners.append(_audit_to_channel(client, settings.audit_channel))
        if settings.slack_app_token is not None:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            socket_handler = AsyncSocketModeHandler(
                bolt, settings.slack_app_token.get_secret_value()
            )
            log.info("Slack: Socket Mode")
        else:
            secret = settings.slack_signing_secret
            assert secret is not None  # Slack is on without Socket Mode: HTTP needs it
            slash = SlashCommands(handlers, secret.get_secret_value())
            app.router.add_post("/slack/events", _slack_events(bolt, slash))
            log.info("Slack: HTTP mode at POST /slack/events")
    else:
        log.info(
            "Slack is off: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (HTTP mode) or "
            "SLACK_APP_TOKEN (Socket Mode) to turn it on"
        )
    app[READINESS] = Readiness(redis, client, stream if worker is not None else None)
    app[TICKER] = ticker
    if instant is not None:
        app[INSTANT] = instant
    app[ENV_TICKS] = env_ticks

    socket_task: list[asyncio.Task[None]] = []

    async def connect_socket_mode() -> None:
        """Connect in the background: Slack being unreachable at start must not keep health,
        metrics and the cron from serving. slack_sdk's client retries and reconnects on its
        own (and logs each failure); this only reports what it could not recover from."""
        try:
            await socket_handler.connect_async()
        except Exception as err:
            reason = slack_error(err) if isinstance(err, SlackApiError) else repr(err)
            log.error("Slack: Socket Mode gave up connecting: %s", reason)

    async def start_ticking(app: web.Application) -> None:
        """Where no mode is recorded yet, App Runner's WORKER_INPROCESS says which it is
        (read once, at start; dotenv and none are read without a network call)."""
        if settings.worker_mode_backend == "apprunner" and dispatcher.cron is not None:
            try:
                env = await backend_for(settings).read()
                mode: Mode = "cron" if env.get("WORKER_INPROCESS") == "0" else "always-on"
                if await dispatcher.cron.adopt_mode(mode):
                    log.info("worker mode from App Runner: %s", mode)
            except Exception as err:
                log.warning("could not read the worker mode from App Runner: %s", err)
        ticker.start(first_now=instant is not None)
        for each in env_ticks:
            each.ticker.start(first_now=each.instant is not None)

    async def start_alerts(app: web.Application) -> None:
        """The worker reads what arrived while none ran, and retries what a crashed process
        left pending. Redis being down now must not stop start-up: the tick sweeps later."""
        if worker is not None:
            worker.start()
            try:
                await worker.sweep(min_idle_ms=0)
            except (RedisError, OSError) as err:
                log.warning("alerts: no sweep at start (%s); the tick will retry", err)

    async def start_socket_mode(app: web.Application) -> None:
        if socket_handler is not None:
            socket_task.append(asyncio.create_task(connect_socket_mode()))

    async def finish_work(app: web.Application) -> None:
        """SIGTERM: stop taking requests (aiohttp), let commands in flight finish."""
        if dispatcher.in_flight:
            log.info("shutdown: waiting for %d command(s) in flight", dispatcher.in_flight)
        if not await dispatcher.wait_idle(SHUTDOWN_GRACE_S):
            log.warning(
                "shutdown: %d command(s) still running after %.0f s; each is safe to stop mid-way",
                dispatcher.in_flight,
                SHUTDOWN_GRACE_S,
            )
        await _stop_drains(ticker, cron, instant)
        for each in env_ticks:
            await _stop_drains(each.ticker, each.cron, each.instant)
        if worker is not None:
            await worker.stop()
        for task in socket_task:
            task.cancel()
        if socket_handler is not None:
            await socket_handler.close_async()

    async def close_connections(app: web.Application) -> None:
        await envs.aclose()  # the default environment's `redis` too
        if client is not None and client.session is not None:
            await client.session.close()

    app.on_startup.append(start_alerts)
    app.on_startup.append(start_ticking)
    app.on_startup.append(start_socket_mode)
    app.on_shutdown.append(finish_work)
    app.on_cleanup.append(close_connections)
    return app


def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; aiohttp turns either into a graceful shutdown."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    others = settings.environments[1:]
    log.info(
        "queueops serve on :%d, Redis %s%s, BullMQ prefixes %s",
        settings.port,
        settings.for_env(settings.default_env).redis_location(),
        f" (environment {settings.default_env}; also {', '.join(others)})" if others else "",
        ", ".join(settings.prefixes) if settings.prefixes else "any (discovered)",
    )
    web.run_app(serving_app(settings), port=settings.port, print=None, shutdown_timeout=30)
    return 0


async def serving_app(settings: Settings) -> web.Application:
    """build_app, and once it has started, what start-up built is frozen out of the garbage
    collector's sight."""
    app = await build_app(settings)
    app.on_startup.append(freeze_startup_heap)
    return app


async def freeze_startup_heap(app: web.Application) -> None:
    """A full collection walks every object: ~80,000 after start-up (the Slack, Redis and
    pydantic modules), 50-90 ms with the event loop stopped, measured in the middle of a
    burst of Slack commands. What start-up built lives as long as the process, so it is
    collected once and frozen (gc.freeze); later full collections see only newer objects."""
    gc.collect()
    gc.freeze()
