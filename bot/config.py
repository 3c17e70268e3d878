"""Configuration from the environment, validated once at start.

Every variable of DESIGN.md is here with its default. A bad value stops start-up with one
line that names the variable (`load_settings` turns pydantic's report into a ConfigError).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from redis.asyncio.connection import ConnectionPool

from bot.durations import check_cadence_ms, format_duration_ms, parse_duration_ms
from bot.errors import ConfigError
from bot.roles import RoleGrants
from bot.urls import hide_url_credentials, url_fit_to_show

# Validators use fullmatch: with match() and '$', "orders\n" passed ('$' matches before a
# final newline), and a queue name with a newline breaks every key and log line it is in.
_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-{}]*")
_SLACK_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")


def validate_queue_name(name: str) -> str:
    """BullMQ forbids ':' in queue names; we also refuse blanks and shell-ish characters."""
    if not _QUEUE_NAME.fullmatch(name) or len(name) > 200:
        raise ValueError(f"{name!r} is not a queue name (letters, digits, . _ - only)")
    return name


def _check_redis_url(value: str) -> None:
    """Refuse what redis-py would refuse only when connecting (a bad query value, an unknown
    option), as a configuration line; the URL in the message is shown without credentials."""
    shown = url_fit_to_show(value)
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"'{shown}' must start with redis://, rediss:// or unix://")
    if parts.scheme == "unix":
        # unix:///run/redis.sock?db=2: the path is the socket, the database is a query value.
        if not parts.path:
            raise ValueError(f"'{shown}' names no socket path (unix:///path/to/redis.sock)")
    else:
        if not parts.hostname:
            hint = " (percent-encode @ : / ? # in a password)" if "@" in value else ""
            raise ValueError(f"'{shown}' names no host{hint}")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"'{shown}' has a bad port") from None
        db = parts.path.lstrip("/")
        if db and not db.isdigit():
            raise ValueError(f"'{shown}' has a bad database number '{db}'")
    try:
        pool = ConnectionPool.from_url(value)
        pool.connection_class(**pool.connection_kwargs)  # builds, does not connect
    except (TypeError, ValueError) as err:
        reason = str(err).split("__init__() ", 1)[-1]  # "got an unexpected keyword 'x'"
        raise ValueError(f"'{shown}' is not a Redis URL redis-py accepts: {reason}") from None


def _comma_list(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value]
    else:
        items = [part.strip() for part in str(value).split(",")]
    cleaned = tuple(item for item in items if item)
    return cleaned or None


class Settings(BaseSettings):
    """The process configuration; field aliases are the environment variable names."""

    model_config = SettingsConfigDict(
        case_sensitive=True, extra="ignore", populate_by_name=True, frozen=True
    )

    redis_url: str = Field("redis://localhost:6379/0", validation_alias="REDIS_URL")
    queues: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        None, validation_alias="QUEUEOPS_QUEUES"
    )
    prefix: str = Field("bull", validation_alias="QUEUEOPS_PREFIX")
    dlq_suffix: str = Field("-dlq", validation_alias="QUEUEOPS_DLQ_SUFFIX")
    drain_url: str | None = Field(None, validation_alias="DRAIN_URL")
    drain_queues_token: SecretStr | None = Field(None, validation_alias="DRAIN_QUEUES_TOKEN")
    cron_secret: SecretStr | None = Field(None, validation_alias="CRON_SECRET")
    cron_token: SecretStr | None = Field(None, validation_alias="CRON_TOKEN")
    slack_bot_token: SecretStr | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field("https://slack.com/api/", validation_alias="SLACK_API_URL")
    alert_webhook_token: SecretStr | None = Field(None, validation_alias="ALERT_WEBHOOK_TOKEN")
    roles: Annotated[RoleGrants, NoDecode] = Field(
        default_factory=RoleGrants, validation_alias="QUEUEOPS_ROLES"
    )
    incident_invite: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        None, validation_alias="INCIDENT_INVITE"
    )
    worker_mode_backend: Literal["apprunner", "dotenv", "none"] = Field(
        "none", validation_alias="WORKER_MODE_BACKEND"
    )
    drain_every_ms: Annotated[int, NoDecode] = Field(
        300_000, validation_alias=AliasChoices("DRAIN_EVERY", "drain_every_ms")
    )
    worker_mode_dotenv: Path | None = Field(None, validation_alias="WORKER_MODE_DOTENV")
    apprunner_service_arn: str | None = Field(None, validation_alias="APPRUNNER_SERVICE_ARN")
    aws_region: str | None = Field(None, validation_alias="AWS_REGION")
    port: int = Field(3000, ge=1, le=65535, validation_alias="PORT")
    audit_channel: str | None = Field(None, validation_alias="AUDIT_CHANNEL")
    audit_reads: bool = Field(False, validation_alias="QUEUEOPS_AUDIT_READS")
    """Changes are always audited; reads (snapshot, dlq list...) only when this is true,
    since writing each one would double what a viewer's snapshot costs Redis."""
    incident_archive_after_ms: Annotated[int | None, NoDecode] = Field(
        None, validation_alias=AliasChoices("INCIDENT_ARCHIVE_AFTER", "incident_archive_after_ms")
    )
    state_prefix: str = Field("queueops", validation_alias="QUEUEOPS_STATE_PREFIX")
    watch_depth: int = Field(1000, ge=0, validation_alias="WATCH_DEPTH")
    watch_oldest_ms: Annotated[int, NoDecode] = Field(
        15 * 60_000, validation_alias=AliasChoices("WATCH_OLDEST", "watch_oldest_ms")
    )
    watch_failed_pct: float = Field(10.0, ge=0, le=100, validation_alias="WATCH_FAILED_PCT")
    watch_dlq_growth: bool = Field(True, validation_alias="WATCH_DLQ_GROWTH")
    redis_monthly_commands: int = Field(500_000, ge=1, validation_alias="REDIS_MONTHLY_COMMANDS")
    operator_rate_per_minute: int = Field(
        12, ge=1, le=10_000, validation_alias="QUEUEOPS_OPERATOR_RATE"
    )

    _redis_origin: str | None = PrivateAttr(default=None)
    """Where `redis_url` came from when not from the environment (the shell's embedded one)."""

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        _check_redis_url(value)
        return value

    @field_validator("queues", "incident_invite", mode="before")
    @classmethod
    def _split(cls, value: object) -> tuple[str, ...] | None:
        return _comma_list(value)

    @field_validator("queues")
    @classmethod
    def _queue_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            for name in value:
                validate_queue_name(name)
        return value

    @field_validator("slack_signing_secret", "slack_bot_token", "slack_app_token")
    @classmethod
    def _not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        """Set but blank is a mistake (an empty secret in a deploy's variables), not "off":
        a blank signing secret would refuse every request with a 401 nobody understands."""
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("is set but blank; unset it, or set the value from the Slack app")
        return value

    @field_validator("audit_channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not _SLACK_CHANNEL_ID.fullmatch(value):
            raise ValueError(f"{value!r} is not a Slack channel id (C…, G…)")
        return value

    @field_validator("prefix", "state_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or ":" in value or " " in value:
            raise ValueError(f"'{value}' is not a key prefix (non-empty, no ':' or spaces)")
        return value

    @field_validator("dlq_suffix")
    @classmethod
    def _suffix(cls, value: str) -> str:
        if not value or ":" in value:
            raise ValueError(f"'{value}' is not a queue-name suffix (non-empty, no ':')")
        return value

    @field_validator("drain_url", "slack_api_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"'{url_fit_to_show(value)}' is not an http(s) URL")
        return value

    @field_validator("worker_mode_dotenv")
    @classmethod
    def _dotenv_folder(cls, value: Path | None) -> Path | None:
        """A missing folder is a typo in the path, not a Redis problem: say so at start."""
        if value is not None and not value.parent.is_dir():
            raise ValueError(f"the folder {value.parent} does not exist")
        return value

    @field_validator("roles", mode="before")
    @classmethod
    def _roles(cls, value: object) -> RoleGrants:
        if isinstance(value, RoleGrants):
            return value
        return RoleGrants.parse(None if value is None else str(value))

    @field_validator(
        "drain_every_ms", "watch_oldest_ms", "incident_archive_after_ms", mode="before"
    )
    @classmethod
    def _duration(cls, value: object) -> int | None:
        """Durations in words ("5m", "1h30m"); "0" turns a watcher rule off."""
        if value is None or value == "":
            return None
        if isinstance(value, int):
            return value
        text = str(value).strip()
        return 0 if text == "0" else parse_duration_ms(text)

    @field_validator("drain_every_ms")
    @classmethod
    def _drain_every(cls, value: int) -> int:
        return check_cadence_ms(value)

    @property
    def drain_token(self) -> SecretStr | None:
        """Seed 000 section 4: DRAIN_QUEUES_TOKEN, else CRON_SECRET, else CRON_TOKEN."""
        return self.drain_queues_token or self.cron_secret or self.cron_token

    @property
    def drain_every(self) -> str:
        return format_duration_ms(self.drain_every_ms)

    @property
    def slack_enabled(self) -> bool:
        """HTTP mode needs the bot token and the signing secret; Socket Mode the app token."""
        return self.slack_bot_token is not None and (
            self.slack_signing_secret is not None or self.slack_app_token is not None
        )

    def with_redis(self, url: str, *, origin: str) -> Settings:
        """These settings on another Redis (the shell's embedded one), named `origin` in
        error messages instead of REDIS_URL, which did not give it."""
        copy = self.model_copy(update={"redis_url": url})
        copy._redis_origin = origin
        return copy

    def redis_origin(self) -> str:
        """Where the Redis comes from, for error messages: a person fixes what is named."""
        if self._redis_origin is not None:
            return self._redis_origin
        return "REDIS_URL" if "redis_url" in self.model_fields_set else "REDIS_URL is not set"

    def redis_location(self) -> str:
        """host:port (or the socket path) for error messages; never the password."""
        parts = urlsplit(self.redis_url)
        if parts.scheme == "unix":
            return parts.path
        return f"{parts.hostname}:{parts.port or 6379}"


def _env_name(loc: tuple[int | str, ...]) -> str:
    field = str(loc[0]) if loc else "?"
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, str):
        return alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return field


def load_settings(**overrides: object) -> Settings:
    """Read the environment; raise ConfigError("VARIABLE: what is wrong") on the first problem."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        first = err.errors()[0]
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        bad = first.get("input")
        if isinstance(bad, str) and "'" not in message and len(bad) < 80:
            message = f"{message} (got {bad!r})"
        # Whatever a message quotes, a URL in it loses its credentials (REDIS_URL, DRAIN_URL).
        message = hide_url_credentials(message)
        raise ConfigError(f"{_env_name(tuple(first.get('loc', ())))}: {message}") from None
