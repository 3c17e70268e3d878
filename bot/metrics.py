"""Prometheus metrics, served at GET /metrics by `queueops serve` (docs/metrics.md lists them).

The queue gauges come from the tick's probe (`QueueGauges.export`), never from a Redis
command of their own: a scrape reads what the last tick saw. With several replicas each
exports the same queue gauges (every replica ticks), so dashboards take `max by (queue)`.
"""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

from bot.queues.models import ProbeResult, QueueWork

COMMANDS = Counter(
    "queueops_commands_total",
    "Commands run, by command and outcome (ok, error, confirm, refused)",
    ["command", "outcome", "transport"],
)
COMMAND_SECONDS = Histogram(
    "queueops_command_seconds",
    "Time from the words to the reply, by command",
    ["command"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REDIS_ERRORS = Counter("queueops_redis_errors_total", "Commands that failed on Redis")
SLACK_ERRORS = Counter("queueops_slack_errors_total", "Slack Web API calls that failed", ["method"])
ALERTS_UNHANDLED = Gauge(
    "queueops_alerts_unhandled",
    "Alerts stored but not handled yet (pending or not read); intake answers 503 over the bound",
)
ALERTS_DEAD_LETTERED = Gauge(
    "queueops_alerts_dead_lettered",
    "Alerts parked in the dead-letter stream after failing for a reason other than an outage",
)
ALERTS_ACCEPTED = Counter(
    "queueops_alerts_accepted_total",
    "Alerts the intake stored and answered 200, by endpoint (alertmanager, generic)",
    ["endpoint"],
)
ALERTS_REFUSED = Counter(
    "queueops_alerts_refused_total",
    "Alerts the intake refused, by endpoint and HTTP status: 400 malformed, 401 wrong token, "
    "413 too big, 503 not stored (the sender retries)",
    ["endpoint", "code"],
)
ALERTS_PARKED = Counter(
    "queueops_alerts_parked_total",
    "Alerts moved to the dead-letter stream: unreadable, or failed 5 times for a reason "
    "other than an outage",
)

QUEUE_JOBS = Gauge(
    "queueops_queue_jobs",
    "Jobs in a queue by state (npm bullmq's getJobCounts states), as the last tick saw them",
    ["queue", "state"],
)
QUEUE_OLDEST_WAITING = Gauge(
    "queueops_queue_oldest_waiting_seconds",
    "How long the job next in line has waited to run, in seconds (0 when none waits)",
    ["queue"],
)
QUEUE_DLQ_JOBS = Gauge(
    "queueops_queue_dlq_jobs",
    "Jobs in the queue's dead-letter queue, as the last tick saw them",
    ["queue"],
)
QUEUE_PAUSED = Gauge("queueops_queue_paused", "1 while the queue is paused, else 0", ["queue"])
QUEUE_FINISHED = Counter(
    "queueops_queue_finished_jobs_total",
    "Jobs that finished between two ticks, by outcome (completed, failed): the growth of the "
    "queue's completed and failed sets, so jobs removed on completion are not seen",
    ["queue", "outcome"],
)
QUEUE_PER_MINUTE = Gauge(
    "queueops_queue_jobs_per_minute",
    "Jobs finished per minute between the last two ticks, by outcome (completed, failed): "
    "completed from BullMQ's metrics counter where Workers record metrics, else from the "
    "completed set's growth; failed from the failed set's growth",
    ["queue", "outcome"],
)
TICK_PROBE_FAILURES = Counter(
    "queueops_tick_probe_failures_total",
    "Ticks whose one Redis command failed: no drain, watcher or queue gauges that tick",
)
DRAIN_TICKS = Counter(
    "queueops_drain_ticks_total",
    "Drain cron ticks by outcome: idle (no work), drained, failed (a drain call failed), "
    "not-leader (another replica drains), off (cron paused or mode always-on)",
    ["outcome"],
)
DRAIN_CALL_SECONDS = Histogram(
    "queueops_drain_call_seconds",
    "How long one call to the app's drain endpoint took, retries included",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120),
)
DRAINS = Counter(
    "queueops_drains_total",
    "Queues the drain cron asked the app to drain, by queue and outcome (ok, failed)",
    ["queue", "outcome"],
)


class QueueGauges:
    """Sets the per-queue metrics from a tick's probe result: no Redis command. A queue the
    probe no longer lists (discovery lost it, the configuration dropped it) loses its
    series, so a dashboard does not show its last value for ever."""

    def __init__(self) -> None:
        self._finished: dict[str, tuple[int, int]] = {}
        self._states: dict[str, set[str]] = {}
        self._rate_base: dict[str, tuple[int, int, int | None, int]] = {}
        """Per queue, at the last tick: failed, completed, BullMQ's metrics count, at ms."""

    def _rates(self, q: QueueWork, at_ms: int) -> None:
        """Completed and failed per minute since the last tick (no Redis command: the
        probe's counts). BullMQ's metrics counter sees jobs removed on completion; the
        completed set's growth is the fallback. A counter that fell (trimmed, cleaned)
        counts 0, not a negative rate."""
        before = self._rate_base.get(q.shown)
        self._rate_base[q.shown] = (q.failed, q.completed, q.metrics_completed, at_ms)
        if before is None or at_ms <= before[3]:
            return
        minutes = (at_ms - before[3]) / 60_000
        if q.metrics_completed is not None and before[2] is not None:
            done = q.metrics_completed - before[2]
        else:
            done = q.completed - before[1]
        QUEUE_PER_MINUTE.labels(q.shown, "completed").set(round(max(done, 0) / minutes, 3))
        QUEUE_PER_MINUTE.labels(q.shown, "failed").set(
            round(max(q.failed - before[0], 0) / minutes, 3)
        )

    def export(self, result: ProbeResult) -> None:
        for q in result.queues:
            for state, n in q.counts.items():
                QUEUE_JOBS.labels(q.shown, state).set(n)
            for state in self._states.get(q.shown, set()) - set(q.counts):
                QUEUE_JOBS.remove(q.shown, state)
            self._states[q.shown] = set(q.counts)
            since = q.oldest_runnable_since_ms
            waited = max(result.at_ms - since, 0) / 1000 if since is not None else 0.0
            QUEUE_OLDEST_WAITING.labels(q.shown).set(waited)
            QUEUE_DLQ_JOBS.labels(q.shown).set(q.dlq_depth)
            QUEUE_PAUSED.labels(q.shown).set(1 if q.is_paused else 0)
            failed = QUEUE_FINISHED.labels(q.shown, "failed")
            completed = QUEUE_FINISHED.labels(q.shown, "completed")
            before = self._finished.get(q.shown)
            if before is not None:  # the first tick only sets the baseline
                failed.inc(max(0, q.failed - before[0]))
                completed.inc(max(0, q.completed - before[1]))
            self._finished[q.shown] = (q.failed, q.completed)
            self._rates(q, result.at_ms)
        seen = {q.shown for q in result.queues}
        for gone in set(self._finished) - seen:
            self._drop(gone)

    def _drop(self, queue: str) -> None:
        for state in self._states.pop(queue, set()):
            QUEUE_JOBS.remove(queue, state)
        for gauge in (QUEUE_OLDEST_WAITING, QUEUE_DLQ_JOBS, QUEUE_PAUSED):
            gauge.remove(queue)
        for outcome in ("failed", "completed"):
            QUEUE_FINISHED.remove(queue, outcome)
            with contextlib.suppress(KeyError):  # one tick seen: no rate set yet
                QUEUE_PER_MINUTE.remove(queue, outcome)
        self._finished.pop(queue, None)
        self._rate_base.pop(queue, None)
