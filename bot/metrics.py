"""Prometheus metrics, served at GET /metrics by `queueops serve`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
