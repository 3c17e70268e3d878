"""docs/configuration.md, generated from the Settings model (bot/config.py).

    python -m bot.config_reference > docs/configuration.md

Each variable's description, format and example live on its field in bot/config.py
(`Field(description=..., examples=[...], json_schema_extra={"section": ..., "format": ...})`);
the default is the field's own, so the reference cannot drift from the code:
tests/test_config_reference.py regenerates it and compares. The few variables read outside
the model are listed here, in OUTSIDE.
"""

from __future__ import annotations

import sys
import types
import typing
from typing import Literal

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from bot.config import Settings
from bot.durations import format_duration_ms

SECTIONS = (
    "Redis and queues",
    "PostgreSQL job table",
    "Slack",
    "Roles, rate limit and audit",
    "Alerts and incidents",
    "Drain endpoint and cron",
    "Worker mode",
)

# (name, where it is read, what it is): variables the code reads outside Settings.
OUTSIDE: tuple[tuple[str, str, str], ...] = (
    (
        "WORKER_INPROCESS",
        "queueops, in the app's environment through `WORKER_MODE_BACKEND` (bot/deploy/, "
        "commands/mode.py, bot/dispatch.py, bot/http_app.py)",
        "Not a variable of queueops itself but of the app that runs the BullMQ workers: "
        "unset or `1` is the always-on worker mode (the app runs its workers all the time), "
        "`0` is the cron mode (the app runs no workers of its own; its jobs are processed when "
        "the drain endpoint is called, by queueops' drain cron every `DRAIN_EVERY`). "
        "`mode always-on` writes `1` and turns queueops' drain cron off; `mode cron` writes `0` "
        "and turns it on. Before anyone ran `mode`, queueops takes its starting mode from it: "
        "read from the `.env` file (`dotenv` backend), from the App Runner service at start "
        "(`apprunner`), or cron (`none`).",
    ),
    (
        "QUEUEOPS_DEBUG",
        "bot/cli.py",
        "Any non-empty value: when a terminal command fails with an internal error (a bug), "
        "its traceback is printed to stderr after the one-line error.",
    ),
    (
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE, "
        "AWS_DEFAULT_REGION",
        "boto3, for the `apprunner` backend (bot/deploy/apprunner.py)",
        "AWS credentials and region as boto3 finds them (these variables, ~/.aws, an instance "
        "or task role); queueops reads none of them itself.",
    ),
)

# Read by the test suite only (tests/), never by queueops.
TESTS_ONLY: tuple[tuple[str, str, str], ...] = (
    (
        "QUEUEOPS_TEST_PG_URL",
        "tests/postgres_for_tests.py",
        "The PostgreSQL the test session uses, `postgresql://user@host:port/dbname` of a "
        "database it may create databases from, instead of one answering on 127.0.0.1:5432 "
        "or a private cluster it starts with initdb; each test works in a database of its "
        "own (`qo_test_…`) and drops it.",
    ),
    (
        "QUEUEOPS_TEST_PG_PRIVATE",
        "tests/postgres_for_tests.py",
        "`1`: start the private PostgreSQL cluster even when a server answers on "
        "127.0.0.1:5432 (to exercise that path).",
    ),
    (
        "QUEUEOPS_TEST_REDIS_URL",
        "tests/redis_for_tests.py",
        "The Redis the test session uses instead of starting its own private `redis-server` "
        "on a free loopback port, e.g. `redis://host:port/db`; tests write under their own "
        "key prefixes and delete what they write.",
    ),
    (
        "CI",
        "tests/conftest.py, tests/drain_helpers.py, tests/test_alertmanager_e2e.py",
        "Set (any value): a test that needs Node, npm bullmq or Alertmanager fails when it is "
        "missing instead of being skipped.",
    ),
    (
        "BULLMQ_CLI_TIMEOUT_MS",
        "tests/node_bullmq.py, tests/interop/bullmq-cli.mjs",
        "How long one call of the npm bullmq bridge may take (default 30000).",
    ),
)

INTRO = """\
# Configuration reference

queueops is configured by environment variables only (it reads no `.env` file itself;
`docker run --env-file .env` or the platform's settings pass them). Names are case-sensitive.
Every value is checked at start: a bad one stops `queueops` with exit code 2 and one line
naming the variable, before anything touches Redis or Slack. A variable that is unset takes
the default below.

- A **duration** is a number and a unit (`ms`, `s`, `m`, `h`, `d`), several in a row:
  `90s`, `5m`, `1h30m`.
- A **boolean** is `true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
- A **secret** is never shown in a reply, a log line or an audit entry.

This file is generated from the settings model in `bot/config.py`:
`python -m bot.config_reference > docs/configuration.md` (a test fails when they disagree).
"""


def env_name(info: FieldInfo) -> str:
    alias = info.validation_alias
    if isinstance(alias, str):
        return alias
    choices = getattr(alias, "choices", None)
    if choices:
        return str(choices[0])
    raise ValueError(f"a Settings field has no environment variable name: {info!r}")


def _extra(info: FieldInfo) -> dict[str, object]:
    extra = info.json_schema_extra
    return dict(extra) if isinstance(extra, dict) else {}


def _base_type(annotation: object) -> object:
    """`X | None` -> X."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        return rest[0] if len(rest) == 1 else annotation
    return annotation


def _bounds(info: FieldInfo) -> str:
    low = high = None
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            low = item.ge
        elif isinstance(item, annotated_types.Le):
            high = item.le
    if low is not None and high is not None:
        return f" from {low:g} to {high:g}"
    if low is not None:
        return f", at least {low:g}"
    return ""


def value_format(info: FieldInfo) -> str:
    """The field's explicit format, else one derived from its type and bounds."""
    explicit = _extra(info).get("format")
    if isinstance(explicit, str):
        return explicit
    base = _base_type(info.annotation)
    if typing.get_origin(base) is Literal:
        return "one of " + ", ".join(f"`{v}`" for v in typing.get_args(base))
    if base is bool:
        return "boolean"
    if base is int:
        return "integer" + _bounds(info)
    if base is float:
        return "number" + _bounds(info)
    if base is SecretStr:
        return "text (secret)"
    return "text"


def shown_default(name: str, info: FieldInfo) -> str:
    if info.default_factory is not None or info.default is None:
        return "unset"
    value = info.default
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if name.endswith("_ms") and isinstance(value, int):
        return f"`{format_duration_ms(value)}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def _fields_by_section() -> dict[str, list[tuple[str, FieldInfo]]]:
    grouped: dict[str, list[tuple[str, FieldInfo]]] = {s: [] for s in SECTIONS}
    for name, info in Settings.model_fields.items():
        variable = env_name(info)
        section = _extra(info).get("section")
        if not isinstance(section, str) or section not in grouped:
            raise ValueError(f"{variable}: json_schema_extra 'section' must be one of {SECTIONS}")
        if not info.description or not info.examples:
            raise ValueError(f"{variable}: give its Field a description and examples")
        grouped[section].append((name, info))
    return grouped


def _anchor(title: str) -> str:
    kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def render() -> str:
    grouped = _fields_by_section()
    out = [INTRO]
    out.append("## Contents\n")
    for section in SECTIONS:
        names = ", ".join(f"`{env_name(info)}`" for _, info in grouped[section])
        out.append(f"- [{section}](#{_anchor(section)}): {names}")
    out.append("- [Read outside the settings](#read-outside-the-settings)")
    out.append("- [Tests only](#tests-only)\n")
    for section in SECTIONS:
        out.append(f"## {section}\n")
        for name, info in grouped[section]:
            variable = env_name(info)
            example = info.examples[0] if info.examples else ""
            out.append(f"### `{variable}`\n")
            out.append(f"{info.description}\n")
            out.append(f"- Default: {shown_default(name, info)}")
            out.append(f"- Format: {value_format(info)}")
            out.append(f"- Example: `{variable}={example}`\n")
    out.append("## Read outside the settings\n")
    out.append(
        "Variables the code reads without the settings model (so they are not checked at start):\n"
    )
    for names, where, what in OUTSIDE:
        title = ", ".join(f"`{n.strip()}`" for n in names.split(","))
        out.append(f"### {title}\n\n{what}\n\n- Read by: {where}\n")
    out.append("## Tests only\n")
    out.append("Read by the test suite, never by queueops:\n")
    for names, where, what in TESTS_ONLY:
        out.append(f"- `{names}` ({where}): {what}")
    return "\n".join(out) + "\n"


def documented_names() -> set[str]:
    """Every variable name the reference documents."""
    names = {env_name(info) for info in Settings.model_fields.values()}
    for listed, _, _ in OUTSIDE + TESTS_ONLY:
        names.update(n.strip() for n in listed.split(","))
    return names


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
