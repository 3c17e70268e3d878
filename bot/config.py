"""Configuration from the environment, validated once at start.

Every variable is here with its default, a description and an example; docs/configuration.md
is generated from this model (`python -m bot.config_reference`). A bad value stops start-up
with one line that names the variable (`load_settings` turns pydantic's report into a
ConfigError).
"""

from __future__ import annotations

import os
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
from bot.queues.keys import DEFAULT_PREFIX
from bot.roles import ENV_NAME, RoleGrants
from bot.text import plain_pydantic_message
from bot.urls import hide_url_credentials, url_fit_to_show

# Validators use fullmatch: with match() and '$', "orders\n" passed ('$' matches before a
# final newline), and a queue name with a newline breaks every key and log line it is in.
# A name starts with a letter, a digit or the `{` of a Redis Cluster hash tag (`{orders}`).
_QUEUE_NAME = re.compile(r"(?=.*[A-Za-z0-9])[A-Za-z0-9{][A-Za-z0-9._\-{}]*")
_SLACK_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")


def validate_queue_name(name: str) -> str:
    """BullMQ forbids ':' in queue names; we also refuse blanks and shell-ish characters."""
    if not _QUEUE_NAME.fullmatch(name) or len(name) > 200:
        raise ValueError(f"{name!r} is not a queue name (letters, digits, . _ - {{ }} only)")
    return name


_GLOB = re.compile(r"[A-Za-z0-9._\-{}*?\[\]!^]+")


def validate_prefix(prefix: str) -> str:
    """A BullMQ prefix: anything npm bullmq takes, but no blank, no space (it would split a
    log line and a Slack word) and no SCAN glob character (discovery matches with it)."""
    if (
        not prefix
        or any(c.isspace() or c in "*?[]" for c in prefix)
        or prefix.startswith(":")
        or prefix.endswith(":")
        or len(prefix) > 200
    ):
        raise ValueError(
            f"{prefix!r} is not a key prefix (non-empty, no spaces, no * ? [ ], "
            "no ':' at either end)"
        )
    return prefix


def validate_queue_word(word: str) -> str:
    """How a command names a queue: its short name, or its full name `PREFIX:NAME`."""
    prefix, sep, name = word.rpartition(":")
    if not sep:
        return validate_queue_name(word)
    try:
        validate_prefix(prefix)
        validate_queue_name(name)
    except ValueError:
        # Said of the whole word, as typed, not of the part after its last ':'.
        raise ValueError(
            f"{word!r} is not a queue name or PREFIX:NAME (a name is letters, digits, . _ - {{ }})"
        ) from None
    return word


def validate_queue_entry(entry: str) -> str:
    """A QUEUEOPS_QUEUES entry: a short name, a full name `PREFIX:NAME`, or a glob."""
    prefix, sep, name = entry.rpartition(":")
    if sep:
        validate_prefix(prefix)
    if any(c in "*?[" for c in entry):
        if not _GLOB.fullmatch(name) or len(entry) > 200:
            raise ValueError(f"{entry!r} is not a queue name or glob")
        return entry
    validate_queue_name(name)
    return entry


_SQL_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
JOB_COLUMNS = (
    "id",
    "type",
    "status",
    "payload",
    "run_after",
    "created_at",
    "updated_at",
    "attempts",
    "last_error",
)
STATUS_STATES = ("waiting", "active", "failed", "completed", "quarantined")


def validate_table_name(name: str) -> str:
    """`table` or `schema.table`, each part a plain SQL identifier (queueops quotes them,
    but a name that needs quoting is more likely a typo than a table)."""
    parts = name.split(".")
    if len(parts) > 2 or not all(_SQL_IDENTIFIER.fullmatch(p) for p in parts):
        raise ValueError(f"{name!r} is not a table name (letters, digits, _; schema.table)")
    return name


def parse_column_names(text: str) -> dict[str, str]:
    """`type=kind,run_after=scheduled_at` -> {"type": "kind", ...}; unknown or bad names
    are a ValueError naming them."""
    columns: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        ours, sep, theirs = (s.strip() for s in part.partition("="))
        if not sep or ours not in JOB_COLUMNS:
            raise ValueError(f"{part!r}: give ours=theirs, ours one of {', '.join(JOB_COLUMNS)}")
        if not _SQL_IDENTIFIER.fullmatch(theirs):
            raise ValueError(f"{theirs!r} is not a column name (letters, digits, _)")
        columns[ours] = theirs
    return columns


def parse_status_words(text: str) -> dict[str, tuple[str, ...]]:
    """`waiting=queued,active=running|locked` -> {"waiting": ("queued",), ...}."""
    states: dict[str, tuple[str, ...]] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        state, sep, words = (s.strip() for s in part.partition("="))
        if not sep or state not in STATUS_STATES:
            raise ValueError(
                f"{part!r}: give state=word|word, state one of {', '.join(STATUS_STATES)}"
            )
        listed = tuple(w.strip() for w in words.split("|") if w.strip())
        if not listed or any(len(w) > 100 for w in listed):
            raise ValueError(f"{part!r}: give at least one status word (at most 100 characters)")
        states[state] = listed
    return states


def check_postgres_url(value: str) -> None:
    """A libpq URL: scheme postgresql:// or postgres://, a host or a socket directory."""
    parts = urlsplit(value)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(
            f"{url_fit_to_show(value)!r} is not a PostgreSQL URL (postgresql://host/dbname)"
        )
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise ValueError(f"{url_fit_to_show(value)!r} has a port that is not a number") from None


def check_http_url(value: str) -> str:
    """An http(s) URL with a host (DRAIN_URL, SLACK_API_URL), shown without credentials."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"'{url_fit_to_show(value)}' is not an http(s) URL")
    return value


def check_link_url(value: str) -> str:
    """A link everyone in an incident channel sees (a runbook or dashboard bookmark): an
    http(s) URL without credentials. `user:password@` or a secret query value (`?token=`)
    is refused, not dropped: the link may not work without it, and a bookmark would show it
    to the whole channel. `{queue}` (GRAFANA_URL) is checked as a queue name would fill it."""
    value = value.strip()
    check_http_url(value.replace("{queue}", "queue"))
    shown = url_fit_to_show(value)
    if shown == value:
        return value
    if "@" in value.partition("://")[2].partition("/")[0]:
        what = "a user name or password"
    else:
        # Shown without its query: the masked value would be the line's last word, and
        # the message's own credential hiding takes the closing quote with it.
        what, shown = "a secret query value (a token, key or password)", shown.partition("?")[0]
    raise ValueError(
        f"'{shown}' carries {what}; bookmarks are seen by everyone in the channel, "
        "give the URL without credentials"
    )


# A comma followed by `queue=` starts the next entry (a URL's query may hold commas).
_NEXT_QUEUE_ENTRY = re.compile(r",\s*(?=[A-Za-z0-9{][A-Za-z0-9._\-{}]*=)")


def parse_runbooks(text: str) -> dict[str, str]:
    """INCIDENT_RUNBOOKS: `queue=url,queue=url`; raise ValueError naming the bad entry."""
    runbooks: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in _NEXT_QUEUE_ENTRY.split(text.strip()))):
        queue, sep, url = (s.strip() for s in entry.partition("="))
        if not sep or "://" in queue:
            raise ValueError(
                f"'{url_fit_to_show(entry)[:80]}' is not queue=url "
                "(e.g. orders=https://wiki.example.com/runbooks/orders)"
            )
        validate_queue_name(queue)
        if queue in runbooks:
            raise ValueError(f"the queue '{queue}' is named twice")
        try:
            runbooks[queue] = check_link_url(url)
        except ValueError as err:
            raise ValueError(f"{queue}: {err}") from None
    return runbooks


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


# A comma followed by `name=` starts the next entry (a URL's query may hold commas).
_NEXT_ENTRY = re.compile(r",\s*(?=[A-Za-z0-9_-]+=)")
DEFAULT_ENV = "default"


def validate_env_name(name: str) -> str:
    """An environment's name: lowercase letters, digits and `-`, 1 to 32 characters."""
    if not ENV_NAME.fullmatch(name):
        raise ValueError(
            f"'{name[:40]}' is not an environment name (lowercase letters, digits, -; "
            "1 to 32 characters)"
        )
    return name


def env_variable_suffix(name: str) -> str:
    """`staging-eu` -> `STAGING_EU`, as in DRAIN_URL_STAGING_EU."""
    return name.upper().replace("-", "_")


def parse_redis_urls(text: str) -> dict[str, str]:
    """QUEUEOPS_REDIS_URLS: `name=url,name=url`; raise ValueError naming the bad entry."""
    urls: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in _NEXT_ENTRY.split(text.strip()))):
        name, sep, url = entry.partition("=")
        if not sep or "://" in name:
            raise ValueError(
                f"'{url_fit_to_show(entry)[:80]}' is not name=url (e.g. prod=redis://host:6379)"
            )
        name = validate_env_name(name.strip())
        if name in urls:
            raise ValueError(f"the environment '{name}' is named twice")
        url = url.strip()
        try:
            _check_redis_url(url)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        urls[name] = url
    return urls


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

    redis_url: str = Field(
        "redis://localhost:6379/0",
        validation_alias="REDIS_URL",
        description="The Redis that holds the BullMQ queues, and queueops' own state beside "
        "them. Checked at start (scheme, host, port, database number, and every query option "
        "redis-py takes); no output, reply or audit entry ever shows its `user:password@` or "
        "`?password=`. `queueops shell` without it uses a Redis on localhost:6379 if one "
        "answers, else an embedded one.",
        examples=["rediss://default:s3cret@redis.example.com:6380/0"],
        json_schema_extra={
            "section": "Redis and queues",
            "format": "`redis://[user:password@]host[:port][/db]`, `rediss://…` (TLS) or "
            "`unix:///path/to/redis.sock?db=N`, with redis-py's query options "
            "(`?socket_timeout=5`); percent-encode `@ : / ? #` in a password",
        },
    )
    redis_urls: Annotated[dict[str, str] | None, NoDecode] = Field(
        None,
        validation_alias="QUEUEOPS_REDIS_URLS",
        description="Several Redis deployments (staging and production, several apps), each "
        "an environment with a name: `--env NAME` (CLI, shell and Slack) picks one, a "
        "`snapshot` without `--env` shows each. REDIS_URL, when set, stays the default "
        "environment, named `default`; unset, the first one named here is the default. "
        "Each environment's drain endpoint is `DRAIN_URL_<ENV>` (the name upper-cased, `-` "
        "as `_`), and roles may be scoped to one (`admin@prod=U1`, QUEUEOPS_ROLES). Each URL "
        "is checked as REDIS_URL is and never shown with its credentials.",
        examples=[
            "prod=rediss://default:s3cret@prod.example.com:6380/0,staging=redis://staging:6379"
        ],
        json_schema_extra={
            "section": "Redis and queues",
            "format": "`name=url` entries separated by commas; a name is lowercase letters, "
            "digits and `-`, 1 to 32 characters, each once; each URL as REDIS_URL",
        },
    )
    queues: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        None,
        validation_alias="QUEUEOPS_QUEUES",
        description="The BullMQ queues queueops snapshots, probes, drains and watches: short "
        "names (under each QUEUEOPS_PREFIX), full names `PREFIX:NAME` and globs "
        "(`billing-*`; with a `:`, matched against full names: `intelliflow:ocr-*`), globs "
        "expanded against the queues that exist. Unset: every BullMQ queue found (SCAN for "
        "`*:meta` keys holding BullMQ's fields, DLQs excluded), found again every "
        "QUEUEOPS_DISCOVER_EVERY and whenever a command names a queue not seen yet.",
        examples=["orders,emails,intelliflow:notifications:email,billing-*"],
        json_schema_extra={
            "section": "Redis and queues",
            "format": "entries separated by commas (spaces around them ignored): a name is "
            "letters, digits, `.`, `_`, `-`, `{`, `}`, starts with a letter, a digit or `{`, "
            "no `:`; a full name is `PREFIX:NAME` (the last `:` separates them); a glob may "
            "use `*`, `?` and `[…]`",
        },
    )
    prefixes: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        None,
        validation_alias=AliasChoices("QUEUEOPS_PREFIX", "prefixes", "prefix"),
        description="BullMQ's key prefixes, the `prefix` option your producers and workers "
        "use: a queue's keys are `<prefix>:<queue>:…`. Several, comma-separated, when teams "
        "use several; a prefix may contain `:` (`intelliflow:notifications`). Unset: queues "
        "are discovered under any prefix, and a short name in QUEUEOPS_QUEUES means "
        "`bull:<name>`. On Redis Cluster every queue needs one hash slot: a hash-tag prefix "
        "(`{bull}`) or hash-tagged queue names (`{orders}`).",
        examples=["{bull}", "intelliflow,intelliflow:notifications"],
        json_schema_extra={
            "section": "Redis and queues",
            "format": "prefixes separated by commas; each non-empty, without spaces, `*`, `?`, "
            "`[`, `]` or a `:` at either end",
        },
    )
    discover_every_ms: Annotated[int, NoDecode] = Field(
        600_000,
        validation_alias=AliasChoices("QUEUEOPS_DISCOVER_EVERY", "discover_every_ms"),
        description="How often `queueops serve` looks for new queues when QUEUEOPS_QUEUES is "
        "unset or holds globs. Each look is a SCAN of the whole keyspace, 1,000 keys a call: a "
        "Redis of N keys costs about N/1,000 commands (`budget` shows the last one's cost).",
        examples=["1h"],
        json_schema_extra={
            "section": "Redis and queues",
            "format": "a duration from 1m to 1d (`10m`, `1h`)",
        },
    )
    dlq_suffix: str = Field(
        "-dlq",
        validation_alias="QUEUEOPS_DLQ_SUFFIX",
        description="The dead-letter queue of queue `Q` is the BullMQ queue `Q` followed by "
        "this suffix; quarantined jobs wait there in the `failed` state.",
        examples=["-dead"],
        json_schema_extra={"section": "Redis and queues", "format": "text, no `:`"},
    )
    readonly: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        None,
        validation_alias="QUEUEOPS_READONLY",
        description="Read-only queues (Bull Board's readOnlyMode): queueops shows them but "
        "refuses every change to them (quarantine, dlq replay, pause, resume, retry, "
        "promote, clean, empty, obliterate, add, remove...) for every role, with one line "
        "naming this policy. Entries are matched as QUEUEOPS_QUEUES' globs are: a short name "
        "or glob against the queue's name under any prefix, one with `:` against full "
        "names. Unset: no queue is read-only.",
        examples=["billing-*,payments"],
        json_schema_extra={
            "section": "Redis and queues",
            "format": "entries separated by commas: names, full names `PREFIX:NAME` and globs "
            "(`*`, `?`, `[…]`), as in QUEUEOPS_QUEUES",
        },
    )

    @field_validator("readonly", mode="before")
    @classmethod
    def _readonly_split(cls, value: object) -> tuple[str, ...] | None:
        return _comma_list(value)

    @field_validator("readonly")
    @classmethod
    def _readonly_entries(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            for entry in value:
                validate_queue_entry(entry)
        return value

    queue_jobs_database_url: str | None = Field(
        None,
        validation_alias="QUEUE_JOBS_DATABASE_URL",
        description="The PostgreSQL database holding a DB-backed job table (a runbook's "
        "`queue_jobs`): it then appears beside the BullMQ queues under the table's name, "
        "with the same commands (snapshot, quarantine, dlq, retry, job show) and in the "
        "tick, the watcher and the drain cron's probe. Unset: no DB queue. Never shown with "
        "its password. It belongs to the default environment (QUEUEOPS_REDIS_URLS).",
        examples=["postgresql://queueops:s3cret@db.example.com:5432/app?sslmode=require"],
        json_schema_extra={
            "section": "PostgreSQL job table",
            "format": "`postgresql://[user[:password]@]host[:port]/dbname[?param=value]`, "
            "libpq's URL form (`postgres://` too)",
        },
    )
    queue_jobs_table: str = Field(
        "queue_jobs",
        validation_alias="QUEUE_JOBS_TABLE",
        description="The job table, `schema.table` or `table`. Its name is the queue's name "
        "in commands and replies (`snapshot queue_jobs`, or `postgres:queue_jobs`).",
        examples=["jobs.queue_jobs"],
        json_schema_extra={
            "section": "PostgreSQL job table",
            "format": "an SQL identifier (letters, digits, `_`, starting with a letter or "
            "`_`), optionally schema-qualified",
        },
    )
    queue_jobs_dlq_table: str = Field(
        "queue_jobs_dlq",
        validation_alias="QUEUE_JOBS_DLQ_TABLE",
        description="The dead-letter table a quarantine copies a row to (id, "
        "original_job_id, type, payload, reason, created_at; a nullable `replayed_at` "
        "is used when present). Never created silently: `queueops db init-dlq` creates it.",
        examples=["jobs.queue_jobs_dlq"],
        json_schema_extra={
            "section": "PostgreSQL job table",
            "format": "as QUEUE_JOBS_TABLE",
        },
    )
    queue_jobs_columns: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        validation_alias="QUEUE_JOBS_COLUMNS",
        description="Column names of the job table where they differ from the defaults "
        "(id, type, status, payload, run_after, created_at, updated_at, attempts, "
        "last_error).",
        examples=["type=kind,run_after=scheduled_at,last_error=error"],
        json_schema_extra={
            "section": "PostgreSQL job table",
            "format": "`ours=theirs` pairs separated by commas; each name an SQL identifier",
        },
    )
    queue_jobs_statuses: Annotated[dict[str, tuple[str, ...]], NoDecode] = Field(
        default_factory=dict,
        validation_alias="QUEUE_JOBS_STATUSES",
        description="What the table's status words mean, where they differ from the "
        "defaults: `waiting=pending` (delayed while run_after is in the future), "
        "`active=running|processing|claimed`, `failed=failed`, "
        "`completed=done|completed|succeeded`, `quarantined=quarantined` (counted in the "
        "DLQ depth). Any other status is shown as itself. A quarantine sets the first "
        "failed word, a retry and a replay the first waiting word.",
        examples=["waiting=queued,active=running|locked,completed=ok"],
        json_schema_extra={
            "section": "PostgreSQL job table",
            "format": "`state=word|word` pairs separated by commas; states waiting, active, "
            "failed, completed, quarantined",
        },
    )
    queue_jobs_quarantine_status: str | None = Field(
        None,
        validation_alias="QUEUE_JOBS_QUARANTINE_STATUS",
        description="The status a quarantine gives a row. Unset: the first failed word "
        "(`failed`), as the runbook's DLQ procedure does; a quarantined row then stays "
        "`failed`, so a worker that retries failed rows must skip rows with a DLQ entry (or "
        "whose `last_error` has `original_status`). Set it to a quarantined word "
        "(`quarantined`) and such a worker never sees them.",
        examples=["quarantined"],
        json_schema_extra={
            "section": "PostgreSQL job table",
            "format": "one of the failed or quarantined words (QUEUE_JOBS_STATUSES)",
        },
    )
    queue_jobs_statement_timeout_ms: Annotated[int, NoDecode] = Field(
        5_000,
        validation_alias=AliasChoices(
            "QUEUE_JOBS_STATEMENT_TIMEOUT", "queue_jobs_statement_timeout_ms"
        ),
        description="The longest any one statement may run (PostgreSQL's statement_timeout, "
        "and lock_timeout at the same value), so a locked table can never hang a slash "
        "command or the tick.",
        examples=["2s"],
        json_schema_extra={
            "section": "PostgreSQL job table",
            "format": "a duration from 100ms to 1m",
        },
    )
    queue_jobs_pause_sql: str | None = Field(
        None,
        validation_alias="QUEUE_JOBS_PAUSE_SQL",
        description="What `pause queue_jobs` runs, in one transaction (a runbook may pause "
        "producers with a feature-flag row). Unset: `pause` is refused, a bare table has "
        "no pause.",
        examples=[
            "UPDATE feature_flags SET data = jsonb_set(data, '{ingest_paused}', 'true') "
            "WHERE name = 'ingest_control'"
        ],
        json_schema_extra={"section": "PostgreSQL job table", "format": "one SQL statement"},
    )
    queue_jobs_resume_sql: str | None = Field(
        None,
        validation_alias="QUEUE_JOBS_RESUME_SQL",
        description="What `resume queue_jobs` runs (see QUEUE_JOBS_PAUSE_SQL).",
        examples=[
            "UPDATE feature_flags SET data = jsonb_set(data, '{ingest_paused}', 'false') "
            "WHERE name = 'ingest_control'"
        ],
        json_schema_extra={"section": "PostgreSQL job table", "format": "one SQL statement"},
    )
    queue_jobs_paused_sql: str | None = Field(
        None,
        validation_alias="QUEUE_JOBS_PAUSED_SQL",
        description="A query answering one boolean, whether the DB queue is paused now; "
        "read inside the snapshot's and the probe's one statement. Unset: shown as not "
        "paused.",
        examples=[
            "SELECT (data->>'ingest_paused')::boolean FROM feature_flags "
            "WHERE name = 'ingest_control'"
        ],
        json_schema_extra={"section": "PostgreSQL job table", "format": "one SELECT"},
    )
    drain_url: str | None = Field(
        None,
        validation_alias="DRAIN_URL",
        description="The base URL of the app that runs the BullMQ workers. `drain` and the "
        "drain cron POST to `<DRAIN_URL>/api/v1/cron/drain-queues` with the drain token in "
        "the `X-Cron-Secret` header. Unset: nothing is drained (`drain` says so).",
        examples=["https://app.example.com"],
        json_schema_extra={"section": "Drain endpoint and cron", "format": "http(s) URL"},
    )
    drain_queues_token: SecretStr | None = Field(
        None,
        validation_alias="DRAIN_QUEUES_TOKEN",
        description="The drain endpoint's token, first choice: the token sent is "
        "DRAIN_QUEUES_TOKEN, else CRON_SECRET, else CRON_TOKEN. A token rotated by "
        "`rotate-token` (kept in Redis at `<QUEUEOPS_STATE_PREFIX>:drain-token`) wins over "
        "all three, so every replica and the CLI switch together.",
        examples=["5e8b2c0d9f7a4e3b1c6d8f0a2b4c6e8f"],
        json_schema_extra={"section": "Drain endpoint and cron", "format": "text (secret)"},
    )
    env_drain_urls: dict[str, str] = Field(
        default_factory=dict,
        validation_alias="DRAIN_URL_<ENV>",
        description="The drain endpoint of one environment of QUEUEOPS_REDIS_URLS, as "
        "DRAIN_URL is the default environment's: `<ENV>` is the environment's name "
        "upper-cased, `-` written `_` (`staging` ends in `_STAGING`, `eu-west` in "
        "`_EU_WEST`). The cron drains each environment that has one; an environment without "
        "one is not drained.",
        examples=["https://staging.app.example.com"],
        json_schema_extra={
            "section": "Drain endpoint and cron",
            "format": "http(s) URL, one variable per environment",
        },
    )
    env_drain_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        validation_alias="DRAIN_QUEUES_TOKEN_<ENV>",
        description="The drain endpoint's token of one environment of QUEUEOPS_REDIS_URLS "
        "(`<ENV>` as in DRAIN_URL_<ENV>). The default environment's tokens are not sent to "
        "another environment's app: unset, that app's drain is called without a token (a "
        "token rotated by `rotate-token` in that environment's Redis still wins).",
        examples=["5e8b2c0d9f7a4e3b1c6d8f0a2b4c6e8f"],
        json_schema_extra={
            "section": "Drain endpoint and cron",
            "format": "text (secret), one variable per environment",
        },
    )
    cron_secret: SecretStr | None = Field(
        None,
        validation_alias="CRON_SECRET",
        description="The drain endpoint's token, second choice: used when DRAIN_QUEUES_TOKEN "
        "is unset.",
        examples=["5e8b2c0d9f7a4e3b1c6d8f0a2b4c6e8f"],
        json_schema_extra={"section": "Drain endpoint and cron", "format": "text (secret)"},
    )
    cron_token: SecretStr | None = Field(
        None,
        validation_alias="CRON_TOKEN",
        description="The drain endpoint's token, third choice: used when DRAIN_QUEUES_TOKEN "
        "and CRON_SECRET are unset. `rotate-token` keeps the old token here in the app's "
        "environment while the app switches to the new one, then removes it.",
        examples=["5e8b2c0d9f7a4e3b1c6d8f0a2b4c6e8f"],
        json_schema_extra={"section": "Drain endpoint and cron", "format": "text (secret)"},
    )
    slack_bot_token: SecretStr | None = Field(
        None,
        validation_alias="SLACK_BOT_TOKEN",
        description="The Slack app's bot token, from OAuth & Permissions once the app is "
        "installed. With SLACK_SIGNING_SECRET (HTTP mode) or SLACK_APP_TOKEN (Socket Mode) it "
        "turns Slack on in `queueops serve`; without it `serve` still runs (health, metrics, "
        "alert intake, the cron) and logs one line saying Slack is off.",
        examples=["xoxb-your-bot-token"],
        json_schema_extra={
            "section": "Slack",
            "format": "`xoxb-…` (secret); set but blank is refused",
        },
    )
    slack_signing_secret: SecretStr | None = Field(
        None,
        validation_alias="SLACK_SIGNING_SECRET",
        description="The Slack app's signing secret (Basic Information → App Credentials). "
        "In HTTP mode every request to `POST /slack/events` is checked against it; Socket Mode "
        "does not use it.",
        examples=["8f14e45fceea167a5a36dedd4bea2543"],
        json_schema_extra={
            "section": "Slack",
            "format": "hex text (secret); set but blank is refused",
        },
    )
    slack_app_token: SecretStr | None = Field(
        None,
        validation_alias="SLACK_APP_TOKEN",
        description="An app-level token with the `connections:write` scope. Set (with "
        "SLACK_BOT_TOKEN), `queueops serve` uses Socket Mode: it connects out to Slack over a "
        "WebSocket, needs no public URL, and does not serve `/slack/events`. Unset: HTTP mode.",
        examples=["xapp-your-app-level-token"],
        json_schema_extra={
            "section": "Slack",
            "format": "`xapp-…` (secret); set but blank is refused",
        },
    )
    slack_api_url: str = Field(
        "https://slack.com/api/",
        validation_alias="SLACK_API_URL",
        description="The base URL of Slack's Web API. Change it only to go through a proxy or "
        "to a stand-in for tests.",
        examples=["http://127.0.0.1:8089/api/"],
        json_schema_extra={"section": "Slack", "format": "http(s) URL"},
    )
    alert_webhook_token: SecretStr | None = Field(
        None,
        validation_alias="ALERT_WEBHOOK_TOKEN",
        description="The bearer token `POST /alerts/alertmanager` and `POST /alerts/generic` "
        "require (`Authorization: Bearer <token>`). Unset: alert intake refuses every request.",
        examples=["c2f7a91e04d64b3f8e5a7c1d9b0e6f32"],
        json_schema_extra={"section": "Alerts and incidents", "format": "text (secret)"},
    )
    roles: Annotated[RoleGrants, NoDecode] = Field(
        default_factory=RoleGrants,
        validation_alias="QUEUEOPS_ROLES",
        description="Who may run which commands in Slack. Roles are ordered: an admin may do "
        "what an operator may, an operator what a viewer may. Viewer commands (snapshot, "
        "dlq list, dlq show, cron status, cron history, budget) are open to everyone unless "
        "a `viewer=` clause is given. Unset: everybody is a viewer and nobody is an operator "
        "or admin. The terminal CLI is always admin (it holds the Redis credentials).",
        examples=["admin=U012AB3CD;operator=S0ONCALL1,U045EF6GH;viewer=*"],
        json_schema_extra={
            "section": "Roles, rate limit and audit",
            "format": "`role=id,id;role=id…`: roles `admin`, `operator`, `viewer`; ids are Slack "
            "user ids (`U…`, `W…`), user-group ids (`S…`) or `*` (everyone)",
        },
    )
    incident_invite: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        None,
        validation_alias="INCIDENT_INVITE",
        description="The Slack users and user groups invited to every incident channel "
        "(a user group's members are invited, 30 at a time). Unset: nobody is invited.",
        examples=["U012AB3CD,S0ONCALL1"],
        json_schema_extra={
            "section": "Alerts and incidents",
            "format": "Slack user ids (`U…`, `W…`) and user-group ids (`S…`), separated by commas",
        },
    )
    worker_mode_backend: Literal["apprunner", "dotenv", "none"] = Field(
        "none",
        validation_alias="WORKER_MODE_BACKEND",
        description="Where `mode` and `rotate-token` read and change the app's environment "
        "(WORKER_INPROCESS, the drain tokens): `apprunner`, an AWS App Runner service "
        "(APPRUNNER_SERVICE_ARN, `pip install 'queueops[aws]'`); `dotenv`, a .env file the app "
        "reads (WORKER_MODE_DOTENV); `none`, nothing is changed, only reported, and the mode "
        "starts as cron.",
        examples=["dotenv"],
        json_schema_extra={"section": "Worker mode"},
    )
    drain_every_ms: Annotated[int, NoDecode] = Field(
        300_000,
        validation_alias=AliasChoices("DRAIN_EVERY", "drain_every_ms"),
        description="How often `queueops serve` ticks: each tick drains the queues that have "
        "work while the worker mode is cron, and drives the watcher, the alert retries and "
        "channel archiving. `cron every 15m` changes it at run time (kept in Redis, and then "
        "wins over this variable).",
        examples=["1m"],
        json_schema_extra={
            "section": "Drain endpoint and cron",
            "format": "a duration from 1s to 1d: a number and a unit (`ms`, `s`, `m`, `h`, "
            "`d`), several in a row (`1h30m`)",
        },
    )
    drain_instant: bool = Field(
        True,
        validation_alias="DRAIN_INSTANT",
        description="Instant drains: in cron mode the leading `queueops serve` also blocks on "
        "every queue's BullMQ marker (the sorted set producers touch when they add a job), "
        "so a new job is drained within about DRAIN_WAKE_DEBOUNCE instead of waiting for "
        "the next tick, and a delayed job at its due time. An idle cadence costs one "
        "blocking command more than the tick. Never in always-on mode (the Workers own the "
        "markers there). `0` leaves the plain cron.",
        examples=["0"],
        json_schema_extra={"section": "Drain endpoint and cron"},
    )
    drain_wake_max_ms: Annotated[int | None, NoDecode] = Field(
        None,
        validation_alias=AliasChoices("DRAIN_WAKE_MAX", "drain_wake_max_ms"),
        description="The longest one blocking wait of the instant drains may last (unset: "
        "the tick's cadence). Some hosted Redis services close connections that block "
        "longer, or cap blocking timeouts: set it below their limit. Each wait is one "
        "Redis command, so an idle cadence costs cadence / DRAIN_WAKE_MAX of them.",
        examples=["1m"],
        json_schema_extra={
            "section": "Drain endpoint and cron",
            "format": "a duration from 1s to 1d (`30s`, `5m`)",
        },
    )
    drain_wake_debounce_ms: Annotated[int, NoDecode] = Field(
        1_000,
        validation_alias=AliasChoices("DRAIN_WAKE_DEBOUNCE", "drain_wake_debounce_ms"),
        description="After a queue's marker wakes the instant drain, how long to wait for "
        "more jobs before calling the drain endpoint: a burst of 1,000 adds is one drain.",
        examples=["250ms"],
        json_schema_extra={
            "section": "Drain endpoint and cron",
            "format": "a duration up to 1m (`0` drains at once)",
        },
    )
    worker_mode_dotenv: Path | None = Field(
        None,
        validation_alias="WORKER_MODE_DOTENV",
        description="The .env file the app reads, for the `dotenv` backend: `mode` and "
        "`rotate-token` change only their own lines in it (every other byte kept) and replace "
        "it atomically. Its folder must exist at start.",
        examples=["/srv/app/.env"],
        json_schema_extra={"section": "Worker mode", "format": "a file path"},
    )
    apprunner_service_arn: str | None = Field(
        None,
        validation_alias="APPRUNNER_SERVICE_ARN",
        description="The App Runner service that runs the app, for the `apprunner` backend "
        "(AWS credentials as boto3 finds them).",
        examples=["arn:aws:apprunner:eu-west-1:123456789012:service/app/0123456789abcdef"],
        json_schema_extra={"section": "Worker mode", "format": "an App Runner service ARN"},
    )
    aws_region: str | None = Field(
        None,
        validation_alias="AWS_REGION",
        description="The AWS region of the App Runner service. Unset: boto3's default region "
        "(AWS_DEFAULT_REGION, ~/.aws/config).",
        examples=["eu-west-1"],
        json_schema_extra={"section": "Worker mode", "format": "an AWS region name"},
    )
    port: int = Field(
        3000,
        ge=1,
        le=65535,
        validation_alias="PORT",
        description="The TCP port `queueops serve` listens on, on every interface: "
        "`/slack/events`, `/alerts/…`, `/healthz`, `/readyz`, `/metrics`. Platforms such as "
        "Heroku set it themselves.",
        examples=["8080"],
        json_schema_extra={"section": "Slack"},
    )
    audit_channel: str | None = Field(
        None,
        validation_alias="AUDIT_CHANNEL",
        description="A Slack channel every audited change and button press is also posted "
        "to (they are always written to the Redis stream `<QUEUEOPS_STATE_PREFIX>:audit`). "
        "Invite the bot to it. Unset: Redis only.",
        examples=["C0123ABCDEF"],
        json_schema_extra={
            "section": "Roles, rate limit and audit",
            "format": "a channel id (`C…`, `G…` or `D…`; not the channel's name)",
        },
    )
    audit_reads: bool = Field(
        False,
        validation_alias="QUEUEOPS_AUDIT_READS",
        description="Also audit reads that went well (the viewer commands: snapshot, dlq list, "
        "cron status, budget, help): one more Redis write each. Changes, and failed or "
        "refused reads, are always audited.",
        examples=["true"],
        json_schema_extra={"section": "Roles, rate limit and audit"},
    )
    """Changes are always audited; reads (snapshot, dlq list...) only when this is true,
    since writing each one would double what a viewer's snapshot costs Redis."""
    incident_archive_after_ms: Annotated[int | None, NoDecode] = Field(
        None,
        validation_alias=AliasChoices("INCIDENT_ARCHIVE_AFTER", "incident_archive_after_ms"),
        description="How long after an incident is resolved its channel is archived. "
        "Unset: incident channels are never archived.",
        examples=["2h"],
        json_schema_extra={
            "section": "Alerts and incidents",
            "format": "a duration: a number and a unit (`ms`, `s`, `m`, `h`, `d`), several in "
            "a row (`1h30m`)",
        },
    )
    pagerduty_routing_key: SecretStr | None = Field(
        None,
        validation_alias="PAGERDUTY_ROUTING_KEY",
        description="The integration key of a PagerDuty service's Events API v2 integration. "
        "Set: an incident at or above PAGE_SEVERITY pages it (one event per incident, its id "
        "the dedup_key), is acknowledged when someone takes the lead and resolved with the "
        "incident. A failed page is shown in the incident channel and retried; it never holds "
        "the incident up. Unset: nobody is paged. See docs/paging.md.",
        examples=["R0123456789ABCDEF0123456789ABCDE"],
        json_schema_extra={
            "section": "Alerts and incidents",
            "format": "text (secret); set but blank is refused",
        },
    )
    pagerduty_url: str = Field(
        "https://events.pagerduty.com/v2/enqueue",
        validation_alias="PAGERDUTY_URL",
        description="Where PagerDuty events are sent: the Events API v2 enqueue endpoint. "
        "Change it only for PagerDuty's EU service region, a proxy, or a stand-in for tests.",
        examples=["https://events.eu.pagerduty.com/v2/enqueue"],
        json_schema_extra={"section": "Alerts and incidents", "format": "http(s) URL"},
    )
    page_severity: Literal["sev1", "sev2", "sev3"] = Field(
        "sev2",
        validation_alias="PAGE_SEVERITY",
        description="The least severe incident that pages (sev1 is the worst): `sev2` pages "
        "sev1 and sev2 incidents. An alert's incident takes its severity from the alert's "
        "`severity` label: `critical` is sev1, `error` or `high` sev2, `warning`, anything "
        "else or no label sev3.",
        examples=["sev1"],
        json_schema_extra={"section": "Alerts and incidents", "format": "`sev1`, `sev2` or `sev3`"},
    )
    incident_updates_channel: str | None = Field(
        None,
        validation_alias="INCIDENT_UPDATES_CHANNEL",
        description="The stakeholders' Slack channel: every incident's `/queue incident "
        "update` is mirrored there as one message per incident, edited in place as updates "
        "come (its title, severity, lead, state and latest update). Invite the bot to it. "
        "Unset: updates stay in the incident channel.",
        examples=["C0123ABCDEF"],
        json_schema_extra={
            "section": "Alerts and incidents",
            "format": "a channel id (`C…`, `G…` or `D…`; not the channel's name)",
        },
    )
    incident_update_every: str = Field(
        "sev1=30m,sev2=60m",
        validation_alias=AliasChoices("INCIDENT_UPDATE_EVERY", "incident_update_every"),
        description="How long an open incident may go without an `/queue incident update` "
        "before its lead (or the channel, with no lead yet) is reminded in the incident "
        "channel, per severity; once per interval, with a `Snooze` button (30 minutes). "
        "Counted from the opening until the first update. A severity left out is not "
        "reminded (sev3 by default); an empty value turns reminders off.",
        examples=["sev1=15m,sev2=30m,sev3=4h"],
        json_schema_extra={
            "section": "Alerts and incidents",
            "format": "`sevN=duration,...` (`sev1=30m`; units `ms`, `s`, `m`, `h`, `d`)",
        },
    )
    incident_runbook_url: str | None = Field(
        None,
        validation_alias=AliasChoices("INCIDENT_RUNBOOK_URL", "incident_runbook_url"),
        description="The runbook every incident channel gets as a `Runbook` bookmark, unless "
        "one of the incident's queues has its own (INCIDENT_RUNBOOKS) or the Alertmanager "
        "alert carries a `runbook_url` annotation. Bookmarks are seen by everyone in the "
        "channel: a URL with credentials (a user name or password, a token in its query) "
        "is refused. Unset: only incidents with a queue runbook or an annotated alert get one.",
        examples=["https://wiki.example.com/runbooks/queues"],
        json_schema_extra={
            "section": "Alerts and incidents",
            "format": "http(s) URL, without credentials",
        },
    )
    incident_runbooks: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("INCIDENT_RUNBOOKS", "incident_runbooks"),
        description="Runbooks per queue: an incident's `Runbook` bookmark is the runbook of "
        "its first queue listed here, before the alert's annotation and "
        "INCIDENT_RUNBOOK_URL.",
        examples=["orders=https://wiki.example.com/rb/orders,ocr=https://wiki.example.com/rb/ocr"],
        json_schema_extra={
            "section": "Alerts and incidents",
            "format": "`queue=URL` pairs separated by commas (a comma inside a URL followed "
            "by `name=` must be written `%2C`); http(s) URLs without credentials",
        },
    )
    grafana_url: str | None = Field(
        None,
        validation_alias=AliasChoices("GRAFANA_URL", "grafana_url"),
        description="The dashboard every incident channel gets as a `Dashboard` bookmark: "
        "`{queue}` in it is replaced by the queue's name (URL-quoted), one bookmark per "
        "queue of the incident, at most 3 (an incident without a queue gets none); without "
        "`{queue}` the URL is one bookmark as it is. A URL with credentials is refused. "
        "Unset: no dashboard bookmark.",
        examples=["https://grafana.example.com/d/queues/bullmq?var-queue={queue}"],
        json_schema_extra={
            "section": "Alerts and incidents",
            "format": "http(s) URL template, `{queue}` where the queue name goes; "
            "without credentials",
        },
    )
    incident_digest_at: str | None = Field(
        None,
        validation_alias=AliasChoices("INCIDENT_DIGEST_AT", "incident_digest_at"),
        description="When (UTC) the daily digest is posted to INCIDENT_UPDATES_CHANNEL "
        "(which it needs): the open incidents, those resolved in the last 24 h with how "
        "long they lasted, and the queues incidents named in the last 24 h with their depth "
        "now. Once a day across replicas; a bot started after the time posts that day's "
        "digest if none did. Unset: no digest.",
        examples=["09:00"],
        json_schema_extra={"section": "Alerts and incidents", "format": "`HH:MM`, 24-hour, UTC"},
    )
    state_prefix: str = Field(
        "queueops",
        validation_alias="QUEUEOPS_STATE_PREFIX",
        description="The key prefix of queueops' own state in Redis: the audit stream "
        "`<prefix>:audit`, the alert streams (`<prefix>:alerts`, `<prefix>:alerts:dead`), the "
        "cron's state and history, confirmations, the rotated drain token. Two queueops on "
        "one Redis need two prefixes.",
        examples=["queueops-staging"],
        json_schema_extra={"section": "Redis and queues", "format": "text, no `:` or spaces"},
    )
    watch_depth: int = Field(
        1000,
        ge=0,
        validation_alias="WATCH_DEPTH",
        description="The watcher opens an incident when a queue has more jobs waiting to run "
        "than this, and resolves it when the depth falls back. 0 turns the rule off.",
        examples=["5000"],
        json_schema_extra={"section": "Alerts and incidents"},
    )
    watch_oldest_ms: Annotated[int, NoDecode] = Field(
        15 * 60_000,
        validation_alias=AliasChoices("WATCH_OLDEST", "watch_oldest_ms"),
        description="The watcher opens an incident when the oldest job ready to run in a "
        "queue (not paused) has waited longer than this. 0 turns the rule off.",
        examples=["30m"],
        json_schema_extra={
            "section": "Alerts and incidents",
            "format": "a duration (`30m`, `1h30m`; units `ms`, `s`, `m`, `h`, `d`) or `0`",
        },
    )
    watch_failed_pct: float = Field(
        10.0,
        ge=0,
        le=100,
        validation_alias="WATCH_FAILED_PCT",
        description="The watcher opens an incident when more than this percentage of the "
        "jobs a queue finished since the last tick failed (with at least 5 failures). 0 turns "
        "the rule off.",
        examples=["25"],
        json_schema_extra={"section": "Alerts and incidents"},
    )
    watch_dlq_growth: bool = Field(
        True,
        validation_alias="WATCH_DLQ_GROWTH",
        description="The watcher opens an incident when a queue's dead-letter queue grew "
        "since the last tick. `false` turns the rule off.",
        examples=["false"],
        json_schema_extra={"section": "Alerts and incidents"},
    )
    watch_no_workers_ms: Annotated[int, NoDecode] = Field(
        5 * 60_000,
        validation_alias=AliasChoices("WATCH_NO_WORKERS", "watch_no_workers_ms"),
        description="The watcher opens an incident when jobs have waited this long in a "
        "queue (not paused) with no npm bullmq Worker connected to it (counted with CLIENT "
        "LIST, only on a tick that finds jobs waiting). Not in cron mode, where no worker "
        "runs between drains. 0 turns the rule off.",
        examples=["10m"],
        json_schema_extra={
            "section": "Alerts and incidents",
            "format": "a duration (`30m`, `1h30m`; units `ms`, `s`, `m`, `h`, `d`) or `0`",
        },
    )
    watch_no_completions_ms: Annotated[int, NoDecode] = Field(
        15 * 60_000,
        validation_alias=AliasChoices("WATCH_NO_COMPLETIONS", "watch_no_completions_ms"),
        description="The watcher opens an incident when jobs wait in a queue and, for this "
        "long, none completed or failed and the waiting count did not fall: stuck, not "
        "busy. 0 turns the rule off.",
        examples=["30m"],
        json_schema_extra={
            "section": "Alerts and incidents",
            "format": "a duration (`30m`, `1h30m`; units `ms`, `s`, `m`, `h`, `d`) or `0`",
        },
    )
    watch_stalled_rising: bool = Field(
        True,
        validation_alias="WATCH_STALLED_RISING",
        description="The watcher opens an incident when a queue has more stalled jobs "
        "(active, their lock expired: a worker died or blocked its event loop) than on the "
        "last tick, and resolves it when the count falls. `false` turns the rule off.",
        examples=["false"],
        json_schema_extra={"section": "Alerts and incidents"},
    )
    watch_cooldown_ms: Annotated[int, NoDecode] = Field(
        10 * 60_000,
        validation_alias=AliasChoices("WATCH_COOLDOWN", "watch_cooldown_ms"),
        description="After a watcher rule's incident for a queue resolves, the rule may not "
        "open another for that queue for this long: a breach inside it waits (kept in Redis, "
        "shared by replicas and across restarts). 0 turns the cooldown off.",
        examples=["30m"],
        json_schema_extra={
            "section": "Alerts and incidents",
            "format": "a duration (`30m`, `1h30m`; units `ms`, `s`, `m`, `h`, `d`) or `0`",
        },
    )
    watch_flap: str = Field(
        "3/30m",
        validation_alias=AliasChoices("WATCH_FLAP", "watch_flap"),
        description="Flapping: a watcher rule that opened N times on a queue within M keeps "
        "one incident open, its summary saying `flapping: N times in M minutes`, instead of "
        "resolving and opening again; it resolves once the rule stayed clear for M. `0` "
        "turns it off.",
        examples=["4/1h"],
        json_schema_extra={
            "section": "Alerts and incidents",
            "format": "`N/M`: a count of at least 2, a duration (`3/30m`), or `0`",
        },
    )
    watch_overrides: str | None = Field(
        None,
        validation_alias=AliasChoices("WATCH_OVERRIDES", "watch_overrides"),
        description="Watcher thresholds per queue: `QUEUE:name=value,...` entries separated "
        "by `;`, QUEUE a name or glob as QUEUEOPS_QUEUES takes them (`billing-*`, "
        "`bull:ocr-*`); names `depth`, `oldest`, `failed_pct`, `dlq`, `no_workers`, "
        "`no_completions`, `stalled` (the WATCH_ variables without `WATCH_`, their values "
        "alike). Where several match a queue, a later one wins. Unset: WATCH_* for all.",
        examples=["billing-*:depth=5000,oldest=30m;payments:failed_pct=2"],
        json_schema_extra={
            "section": "Alerts and incidents",
            "format": "`QUEUE:name=value,...;QUEUE:...`",
        },
    )

    @field_validator("watch_cooldown_ms", mode="before")
    @classmethod
    def _watch_cooldown(cls, value: object) -> object:
        """A duration in words ("10m"); "0" turns the cooldown off."""
        if isinstance(value, int) or value is None:
            return value
        text = str(value).strip()
        return 0 if text == "0" else parse_duration_ms(text)

    @field_validator("watch_flap")
    @classmethod
    def _watch_flap(cls, value: str) -> str:
        """Parsed here so a bad value stops start-up with one line naming the variable; the
        watcher parses the same text again (bot/alerts/watcher.py). Imported here: the
        watcher's module imports the queues'."""
        from bot.alerts.watcher import parse_flap

        parse_flap(value)
        return value.strip()

    @field_validator("incident_update_every")
    @classmethod
    def _incident_update_every(cls, value: str) -> str:
        """As WATCH_FLAP: checked at start, parsed again by the reminders (imported here:
        their module imports the incidents')."""
        from bot.incidents.reminders import parse_update_every

        parse_update_every(value)
        return value.strip()

    @field_validator("incident_digest_at")
    @classmethod
    def _incident_digest_at(cls, value: str | None) -> str | None:
        """As INCIDENT_UPDATE_EVERY: checked at start, parsed again by the digest."""
        from bot.incidents.digest import parse_digest_at

        if value is None:
            return None
        at = parse_digest_at(value)
        return None if at is None else f"{at.hour:02d}:{at.minute:02d}"

    @field_validator("watch_overrides")
    @classmethod
    def _watch_overrides(cls, value: str | None) -> str | None:
        """As WATCH_FLAP: checked at start, parsed again by the watcher."""
        from bot.alerts.watcher import parse_overrides

        if value is None:
            return None
        parse_overrides(value)
        return value.strip() or None

    @field_validator("watch_no_workers_ms", "watch_no_completions_ms", mode="before")
    @classmethod
    def _watch_duration(cls, value: object) -> object:
        """Durations in words ("10m"), as WATCH_OLDEST takes them; "0" turns the rule off."""
        if isinstance(value, int) or value is None:
            return value
        text = str(value).strip()
        return 0 if text == "0" else parse_duration_ms(text)

    redis_monthly_commands: int = Field(
        500_000,
        ge=1,
        validation_alias="REDIS_MONTHLY_COMMANDS",
        description="The Redis commands a month your Redis plan allows; `budget` compares "
        "the idle cost of each worker mode and cadence with it.",
        examples=["10000000"],
        json_schema_extra={"section": "Drain endpoint and cron"},
    )
    operator_rate_per_minute: int = Field(
        12,
        ge=1,
        le=10_000,
        validation_alias="QUEUEOPS_OPERATOR_RATE",
        description="How many operator commands one person may run a minute from Slack "
        "(the terminal CLI is not limited).",
        examples=["30"],
        json_schema_extra={"section": "Roles, rate limit and audit"},
    )

    _redis_origin: str | None = PrivateAttr(default=None)
    """Where `redis_url` came from when not from the environment (the shell's embedded one)."""
    _env_name: str | None = PrivateAttr(default=None)
    """The environment these settings are of (`for_env`); None: not picked yet."""

    @field_validator("redis_urls", mode="before")
    @classmethod
    def _redis_urls(cls, value: object) -> dict[str, str] | None:
        if value is None or isinstance(value, dict):
            return value
        return parse_redis_urls(str(value)) or None

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        _check_redis_url(value)
        return value

    @field_validator("queues", "incident_invite", "prefixes", mode="before")
    @classmethod
    def _split(cls, value: object) -> tuple[str, ...] | None:
        return _comma_list(value)

    @field_validator("queues")
    @classmethod
    def _queue_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            for entry in value:
                validate_queue_entry(entry)
        return value

    @field_validator("prefixes")
    @classmethod
    def _prefixes(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            for prefix in value:
                validate_prefix(prefix)
            return tuple(dict.fromkeys(value))
        return value

    @field_validator("pagerduty_routing_key")
    @classmethod
    def _routing_key(cls, value: SecretStr | None) -> SecretStr | None:
        """A blank key in a deploy's variables is a mistake, not "do not page": say so at
        start rather than at the first incident, when nobody gets paged."""
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("is set but blank; unset it, or set the PagerDuty integration key")
        return value

    @field_validator("slack_signing_secret", "slack_bot_token", "slack_app_token")
    @classmethod
    def _not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        """Set but blank is a mistake (an empty secret in a deploy's variables), not "off":
        a blank signing secret would refuse every request with a 401 nobody understands."""
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("is set but blank; unset it, or set the value from the Slack app")
        return value

    @field_validator("audit_channel", "incident_updates_channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not _SLACK_CHANNEL_ID.fullmatch(value):
            raise ValueError(f"{value!r} is not a Slack channel id (C…, G…)")
        return value

    @field_validator("state_prefix")
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

    @field_validator("queue_jobs_database_url")
    @classmethod
    def _pg_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_postgres_url(value)
        return value

    @field_validator("queue_jobs_table", "queue_jobs_dlq_table")
    @classmethod
    def _table(cls, value: str) -> str:
        return validate_table_name(value)

    @field_validator("queue_jobs_columns", mode="before")
    @classmethod
    def _columns(cls, value: object) -> dict[str, str]:
        if isinstance(value, dict):
            return value
        return parse_column_names("" if value is None else str(value))

    @field_validator("queue_jobs_statuses", mode="before")
    @classmethod
    def _statuses(cls, value: object) -> dict[str, tuple[str, ...]]:
        if isinstance(value, dict):
            return value
        return parse_status_words("" if value is None else str(value))

    @field_validator("queue_jobs_statement_timeout_ms")
    @classmethod
    def _statement_timeout(cls, value: int) -> int:
        if not 100 <= value <= 60_000:
            raise ValueError(f"{format_duration_ms(value)} is outside 100ms to 1m")
        return value

    @field_validator("queue_jobs_pause_sql", "queue_jobs_resume_sql", "queue_jobs_paused_sql")
    @classmethod
    def _sql(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("is set but blank; unset it, or give the statement")
        return None if value is None else value.strip().rstrip(";").strip()

    @field_validator("drain_url", "slack_api_url", "pagerduty_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @field_validator("incident_runbook_url", "grafana_url")
    @classmethod
    def _link_url(cls, value: str | None) -> str | None:
        """Set but blank is unset (a deploy template's empty line)."""
        return check_link_url(value) if value and value.strip() else None

    @field_validator("incident_runbooks", mode="before")
    @classmethod
    def _runbooks(cls, value: object) -> dict[str, str]:
        if isinstance(value, dict):
            return {str(q): check_link_url(str(u)) for q, u in value.items()}
        return parse_runbooks("" if value is None else str(value))

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
        "drain_every_ms",
        "watch_oldest_ms",
        "incident_archive_after_ms",
        "drain_wake_max_ms",
        "drain_wake_debounce_ms",
        "discover_every_ms",
        "queue_jobs_statement_timeout_ms",
        mode="before",
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

    @field_validator("discover_every_ms")
    @classmethod
    def _discover_every(cls, value: int) -> int:
        if not 60_000 <= value <= 86_400_000:
            raise ValueError(f"{format_duration_ms(value)} is outside 1m to 1d")
        return value

    @field_validator("drain_wake_max_ms")
    @classmethod
    def _wake_max(cls, value: int | None) -> int | None:
        return None if value is None else check_cadence_ms(value)

    @field_validator("drain_wake_debounce_ms")
    @classmethod
    def _wake_debounce(cls, value: int) -> int:
        if not 0 <= value <= 60_000:
            raise ValueError(f"{format_duration_ms(value)} is longer than 1m, the longest wait")
        return value

    @property
    def prefix(self) -> str:
        """The first prefix, where queueops puts a queue it creates itself (the demo)."""
        return self.prefixes[0] if self.prefixes else DEFAULT_PREFIX

    @property
    def drain_token(self) -> SecretStr | None:
        """The drain endpoint's token: DRAIN_QUEUES_TOKEN, else CRON_SECRET, else CRON_TOKEN."""
        return self.drain_queues_token or self.cron_secret or self.cron_token

    @property
    def drain_every(self) -> str:
        return format_duration_ms(self.drain_every_ms)

    @property
    def environments(self) -> list[str]:
        """The environments, in order: `default` (REDIS_URL) when QUEUEOPS_REDIS_URLS is
        unset or REDIS_URL is set too, then those QUEUEOPS_REDIS_URLS names."""
        named = list(self.redis_urls or {})
        if not named or "redis_url" in self.model_fields_set:
            return [DEFAULT_ENV, *named]
        return named

    @property
    def default_env(self) -> str:
        return self.environments[0]

    @property
    def env_name(self) -> str:
        """The environment of these settings (the default one until `for_env` picks)."""
        return self._env_name or self.default_env

    def for_env(self, name: str) -> Settings:
        """These settings in environment `name`: its Redis, its drain endpoint and token."""
        if name not in self.environments:
            raise ConfigError(
                f"unknown environment '{name}' (known: {', '.join(self.environments)})"
            )
        if name == DEFAULT_ENV and name not in (self.redis_urls or {}):
            copy = self.model_copy()
        else:
            urls = self.redis_urls or {}
            update: dict[str, object] = {"redis_url": urls[name]}
            if name != self.default_env:
                update["queue_jobs_database_url"] = None  # the DB queue is the default's
            if name in self.env_drain_urls or name != self.default_env:
                # Its own app; the default environment's tokens are not sent to it. (The
                # default environment, named here when REDIS_URL is unset, keeps DRAIN_URL
                # and its tokens unless DRAIN_URL_<ENV> names another app.)
                update |= {
                    "drain_url": self.env_drain_urls.get(name),
                    "drain_queues_token": self.env_drain_tokens.get(name),
                    "cron_secret": None,
                    "cron_token": None,
                }
            copy = self.model_copy(update=update)
            copy._redis_origin = f"QUEUEOPS_REDIS_URLS, environment {name}"
            # Which variables were set stays as it was: `environments` reads it.
            object.__setattr__(copy, "__pydantic_fields_set__", set(self.model_fields_set))
        copy._env_name = name
        return copy

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

    def queue_jobs_location(self) -> str:
        """host:port/dbname of QUEUE_JOBS_DATABASE_URL for messages; never the password."""
        parts = urlsplit(self.queue_jobs_database_url or "")
        host = parts.hostname or "localhost"
        return f"{host}:{parts.port or 5432}{parts.path or '/'}"

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


def _env_drain_values(overrides: dict[str, object]) -> dict[str, object]:
    """DRAIN_URL_<ENV> and DRAIN_QUEUES_TOKEN_<ENV> for each environment QUEUEOPS_REDIS_URLS
    names (they cannot be declared fields: their names depend on the environments). Raises
    ConfigError naming the variable."""
    given = overrides.get("redis_urls", os.environ.get("QUEUEOPS_REDIS_URLS"))
    if given is None or "env_drain_urls" in overrides:
        return overrides
    try:
        names = list(given) if isinstance(given, dict) else list(parse_redis_urls(str(given)))
    except ValueError:
        return overrides  # the model reports it, naming QUEUEOPS_REDIS_URLS
    urls: dict[str, str] = {}
    tokens: dict[str, SecretStr] = {}
    for name in names:
        suffix = env_variable_suffix(name)
        url = os.environ.get(f"DRAIN_URL_{suffix}")
        if url is not None:
            try:
                urls[name] = check_http_url(url)
            except ValueError as err:
                raise ConfigError(f"DRAIN_URL_{suffix}: {err}") from None
        token = os.environ.get(f"DRAIN_QUEUES_TOKEN_{suffix}")
        if token is not None:
            if not token.strip():
                raise ConfigError(f"DRAIN_QUEUES_TOKEN_{suffix}: is set but blank")
            tokens[name] = SecretStr(token)
    return {**overrides, "env_drain_urls": urls, "env_drain_tokens": tokens}


def _check_environments(settings: Settings) -> None:
    """What needs every field at once: `default` taken twice, roles scoped to no env, a
    quarantine status outside the vocabulary."""
    chosen = settings.queue_jobs_quarantine_status
    if chosen is not None:
        words = {
            w
            for state in ("failed", "quarantined")
            for w in settings.queue_jobs_statuses.get(state)
            or {"failed": ("failed",), "quarantined": ("quarantined",)}[state]
        }
        if chosen not in words:
            raise ConfigError(
                f"QUEUE_JOBS_QUARANTINE_STATUS: '{chosen}' is not a failed or quarantined "
                f"word (QUEUE_JOBS_STATUSES: {', '.join(sorted(words))})"
            )
    if settings.incident_digest_at is not None and settings.incident_updates_channel is None:
        raise ConfigError(
            "INCIDENT_DIGEST_AT: the digest is posted to INCIDENT_UPDATES_CHANNEL; set it "
            "(a channel id), or unset INCIDENT_DIGEST_AT"
        )
    named = settings.redis_urls or {}
    if DEFAULT_ENV in named and "redis_url" in settings.model_fields_set:
        raise ConfigError(
            "QUEUEOPS_REDIS_URLS: 'default' is REDIS_URL's environment; name this one "
            "otherwise, or unset REDIS_URL"
        )
    known = settings.environments
    for env in settings.roles.environments():
        if env not in known:
            raise ConfigError(
                f"QUEUEOPS_ROLES: '@{env}' names no environment (known: {', '.join(known)})"
            )


def load_settings(**overrides: object) -> Settings:
    """Read the environment; raise ConfigError("VARIABLE: what is wrong") on the first problem."""
    try:
        settings = Settings(**_env_drain_values(overrides))  # type: ignore[arg-type]
        _check_environments(settings)
        return settings
    except ValidationError as err:
        first = err.errors()[0]
        message = plain_pydantic_message(first)
        bad = first.get("input")
        if isinstance(bad, str) and "'" not in message and "(got" not in message:
            message = f"{message} (got {bad[:80]!r})"
        # Whatever a message quotes, a URL in it loses its credentials (REDIS_URL, DRAIN_URL).
        message = hide_url_credentials(message)
        raise ConfigError(f"{_env_name(tuple(first.get('loc', ())))}: {message}") from None
