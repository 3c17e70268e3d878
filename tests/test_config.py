"""Configuration: every variable validated at start, a bad one named in one line."""

from __future__ import annotations

import pytest

from bot.config import load_settings
from bot.durations import format_duration_ms, humanize_age_ms, parse_duration_ms
from bot.errors import ConfigError
from bot.roles import Role, RoleGrants

ALL_VARS = (
    "WATCH_DEPTH",
    "WATCH_OLDEST",
    "WATCH_FAILED_PCT",
    "WATCH_DLQ_GROWTH",
    "REDIS_MONTHLY_COMMANDS",
    "INCIDENT_ARCHIVE_AFTER",
    "AUDIT_CHANNEL",
    "QUEUEOPS_AUDIT_READS",
    "QUEUEOPS_OPERATOR_RATE",
    "QUEUEOPS_STATE_PREFIX",
    "APPRUNNER_SERVICE_ARN",
    "AWS_REGION",
    "REDIS_URL",
    "QUEUEOPS_QUEUES",
    "QUEUEOPS_PREFIX",
    "QUEUEOPS_DLQ_SUFFIX",
    "DRAIN_URL",
    "DRAIN_QUEUES_TOKEN",
    "CRON_SECRET",
    "CRON_TOKEN",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "SLACK_API_URL",
    "ALERT_WEBHOOK_TOKEN",
    "QUEUEOPS_ROLES",
    "INCIDENT_INVITE",
    "WORKER_MODE_BACKEND",
    "DRAIN_EVERY",
    "WORKER_MODE_DOTENV",
    "PORT",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ALL_VARS:
        monkeypatch.delenv(var, raising=False)


def test_defaults_follow_design() -> None:
    s = load_settings()
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.queues is None and s.prefix == "bull" and s.dlq_suffix == "-dlq"
    assert s.drain_every == "5m" and s.drain_every_ms == 300_000
    assert s.worker_mode_backend == "none" and s.port == 3000
    assert s.drain_token is None and s.slack_api_url == "https://slack.com/api/"
    assert s.audit_reads is False  # reads are not audited unless asked (issue 9)


@pytest.mark.parametrize(("value", "audited"), [("true", True), ("1", True), ("false", False)])
def test_audit_reads_is_a_switch(
    monkeypatch: pytest.MonkeyPatch, value: str, audited: bool
) -> None:
    monkeypatch.setenv("QUEUEOPS_AUDIT_READS", value)
    assert load_settings().audit_reads is audited


def test_values_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUEOPS_QUEUES", " batch-jobs, dsar-jobs ,,")
    monkeypatch.setenv("DRAIN_EVERY", "1h30m")
    monkeypatch.setenv("INCIDENT_INVITE", "U1ABC,S2DEF")
    monkeypatch.setenv("CRON_TOKEN", "older")
    monkeypatch.setenv("CRON_SECRET", "newer")
    monkeypatch.setenv("QUEUEOPS_PREFIX", "intelliflow, intelliflow:notifications,intelliflow")
    s = load_settings()
    assert s.queues == ("batch-jobs", "dsar-jobs")
    assert s.prefixes == ("intelliflow", "intelliflow:notifications") and s.prefix == "intelliflow"

    # Hash-tagged names, as Redis Cluster needs them (issue 12): a name may start with `{`.
    monkeypatch.setenv("QUEUEOPS_QUEUES", "{orders},bull:{emails},{bull}x")
    assert load_settings().queues == ("{orders}", "bull:{emails}", "{bull}x")
    assert s.drain_every_ms == 5_400_000 and s.drain_every == "1h30m"
    assert s.incident_invite == ("U1ABC", "S2DEF")
    token = s.drain_token
    assert token is not None and token.get_secret_value() == "newer"
    monkeypatch.setenv("DRAIN_QUEUES_TOKEN", "newest")
    token = load_settings().drain_token
    assert token is not None and token.get_secret_value() == "newest"


@pytest.mark.parametrize(
    ("var", "value", "says"),
    [
        ("REDIS_URL", "http://localhost", "must start with redis://"),
        ("REDIS_URL", "redis://:6379", "names no host"),
        ("REDIS_URL", "redis://localhost:99999", "bad port"),
        ("REDIS_URL", "redis://localhost/abc", "bad database number"),
        ("QUEUEOPS_QUEUES", "good,b@d", "'b@d' is not a queue name"),
        ("QUEUEOPS_QUEUES", "good,pre fix:q", "'pre fix' is not a key prefix"),
        ("QUEUEOPS_QUEUES", "good,bull:", "'' is not a queue name"),
        ("QUEUEOPS_QUEUES", "bull:ocr-*/x", "'bull:ocr-*/x' is not a queue name or glob"),
        ("QUEUEOPS_PREFIX", "bull,a:", "'a:' is not a key prefix"),
        ("QUEUEOPS_PREFIX", "bu*ll", "'bu*ll' is not a key prefix"),
        ("QUEUEOPS_DISCOVER_EVERY", "10s", "10s is outside 1m to 1d"),
        ("DRAIN_URL", "ftp://x", "not an http(s) URL"),
        ("SLACK_API_URL", "localhost:8080", "not an http(s) URL"),
        ("SLACK_SIGNING_SECRET", "  ", "is set but blank"),
        ("SLACK_BOT_TOKEN", "", "is set but blank"),
        ("QUEUEOPS_ROLES", "boss=U123", "unknown role 'boss'"),
        ("QUEUEOPS_ROLES", "admin=alice", "'alice' is not a Slack user id"),
        ("QUEUEOPS_ROLES", "admin", "is not role=ids"),
        ("WORKER_MODE_BACKEND", "k8s", "'apprunner', 'dotenv' or 'none'"),
        ("DRAIN_EVERY", "5 minutes", "is not a duration"),
        ("DRAIN_EVERY", "500ms", "shorter than 1s"),
        ("PORT", "http", "'http' is not a whole number"),
        ("PORT", "70000", "must be at most 65535 (got 70000)"),
        ("WATCH_DEPTH", "-1", "must be at least 0 (got -1)"),
        ("WATCH_OLDEST", "half an hour", "is not a duration"),
        ("WATCH_FAILED_PCT", "150", "must be at most 100"),
        ("WATCH_DLQ_GROWTH", "maybe", "'maybe' is not yes or no"),
        ("REDIS_MONTHLY_COMMANDS", "0", "must be at least 1"),
        ("INCIDENT_ARCHIVE_AFTER", "tomorrow", "is not a duration"),
        ("AUDIT_CHANNEL", "#ops", "is not a Slack channel id"),
        ("QUEUEOPS_AUDIT_READS", "sometimes", "is not yes or no"),
        ("QUEUEOPS_OPERATOR_RATE", "0", "must be at least 1"),
        ("QUEUEOPS_STATE_PREFIX", "a:b", "not a key prefix"),
        ("DRAIN_EVERY", "999999999999d", "longer than a year"),
        ("DRAIN_EVERY", "25h", "1d1h is longer than 1d, the slowest cadence"),
        ("DRAIN_EVERY", "0", "shorter than 1s"),
        ("WATCH_OLDEST", "99999999d", "longer than a year"),
        ("INCIDENT_ARCHIVE_AFTER", "400d", "longer than a year"),
        ("INCIDENT_ARCHIVE_AFTER", "9" * 5000 + "s", "is not a duration"),
        ("AUDIT_CHANNEL", "C0AUDIT\n", "is not a Slack channel id"),
        ("REDIS_URL", "redis://localhost/0?socket_timeout=abc", "'socket_timeout'"),
        ("REDIS_URL", "redis://localhost/0?colour=blue", "'colour'"),
        ("REDIS_URL", "unix://", "names no socket path"),
        ("WORKER_MODE_DOTENV", "/nonexistent-qo/app/.env", "/nonexistent-qo/app does not exist"),
        ("DRAIN_INSTANT", "maybe", "'maybe' is not yes or no"),
        ("DRAIN_WAKE_MAX", "0", "shorter than 1s"),
        ("DRAIN_WAKE_MAX", "2d", "longer than 1d"),
        ("DRAIN_WAKE_DEBOUNCE", "2m", "longer than 1m, the longest wait"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, says: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert message.startswith(f"{var}: ") and says in message and "\n" not in message
    assert "Input should" not in message and "Value error" not in message  # plain words
    assert err.value.exit_code == 2


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("unix:///run/redis/redis.sock", "/run/redis/redis.sock"),
        ("unix:///tmp/r.sock?db=3", "/tmp/r.sock"),
        ("rediss://cache:6380/1?ssl_cert_reqs=none", "cache:6380"),
    ],
)
def test_every_url_form_the_check_names_is_accepted(
    monkeypatch: pytest.MonkeyPatch, url: str, location: str
) -> None:
    monkeypatch.setenv("REDIS_URL", url)
    settings = load_settings()
    assert settings.redis_location() == location and settings.redis_origin() == "REDIS_URL"


def test_a_redis_not_given_by_redis_url_is_named_for_what_it_is() -> None:
    default = load_settings()
    assert default.redis_origin() == "REDIS_URL is not set"
    embedded = default.with_redis("redis://127.0.0.1:4711/0", origin="embedded")
    assert embedded.redis_origin() == "embedded" and embedded.redis_location() == "127.0.0.1:4711"
    assert default.redis_url == "redis://localhost:6379/0"  # the original is unchanged


def test_cadences_are_bounded_one_second_to_one_day() -> None:
    from bot.durations import check_cadence_ms

    assert check_cadence_ms(1000) == 1000 and check_cadence_ms(86_400_000) == 86_400_000
    for bad in (999, 86_400_001):
        with pytest.raises(ValueError):
            check_cadence_ms(bad)
    with pytest.raises(ValueError, match="longer than a year"):
        parse_duration_ms("999999999999d")


def test_redis_location_never_shows_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "rediss://default:s3cret@cache.example.com:6380/2")
    assert load_settings().redis_location() == "cache.example.com:6380"


def test_roles_grant_by_user_group_and_star() -> None:
    grants = RoleGrants.parse("admin=U1ADMIN;operator=S0OPS,U2OP;viewer=*")
    assert grants.role_of({"U1ADMIN"}) is Role.ADMIN
    assert grants.role_of({"U9X", "S0OPS"}) is Role.OPERATOR
    assert grants.role_of({"U9X"}) is Role.VIEWER
    assert RoleGrants.parse("viewer=U1ONLY").role_of({"U2"}) is Role.ANYONE
    assert RoleGrants.parse(None).role_of({"U2"}) is Role.VIEWER  # viewers open by default


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("30s", 30_000),
        ("5m", 300_000),
        ("1h", 3_600_000),
        ("1h30m", 5_400_000),
        ("250ms", 250),
        ("2d", 172_800_000),
    ],
)
def test_durations_round_trip(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms
    assert format_duration_ms(ms) == text


def test_ages_read_like_words() -> None:
    assert humanize_age_ms(12_000) == "12 s"
    assert humanize_age_ms(42 * 60_000) == "42 min"
    assert humanize_age_ms(185 * 60_000) == "3 h 5 min"
    assert humanize_age_ms((2 * 24 + 4) * 3_600_000) == "2 d 4 h"
