"""docs/configuration.md is generated from the Settings model and must agree with it; the
other docs name only variables that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot import config_reference
from bot.config import Settings
from commands.mode import INPROCESS
from commands.registry import all_commands

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "configuration.md"
DOCS = (ROOT / "README.md", ROOT / "docs" / "slack-install.md", REFERENCE)
# An environment variable's shape: upper case words joined by underscores (REDIS_URL).
VARIABLE = re.compile(r"(?<![\w.-])[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+(?![\w-])")
# What code reads from an environment: its own (os.environ) or the app's (a backend's env).
ENV_READ = re.compile(
    r"""(?:os\.environ\.get|os\.getenv|\benv\.get)\(\s*["']([A-Z][A-Z0-9_]+)["']"""
    r"""|os\.environ\[\s*["']([A-Z][A-Z0-9_]+)["']\s*\]"""
    r"""|["']([A-Z][A-Z0-9_]+)["']\s+in\s+os\.environ"""
)


def test_the_reference_is_generated_from_the_model() -> None:
    assert REFERENCE.read_text() == config_reference.render(), (
        "docs/configuration.md disagrees with bot/config.py: "
        "python -m bot.config_reference > docs/configuration.md"
    )


def test_every_setting_has_a_description_an_example_and_a_section() -> None:
    for info in Settings.model_fields.values():
        name = config_reference.env_name(info)
        assert info.description, name
        assert info.examples, name
        extra = info.json_schema_extra
        assert isinstance(extra, dict) and extra.get("section") in config_reference.SECTIONS
        assert f"### `{name}`" in REFERENCE.read_text()


def test_defaults_in_the_reference_are_the_models() -> None:
    text = REFERENCE.read_text()
    for expected in (
        "### `PORT`",
        "- Default: `3000`",
        "- Default: `5m`",  # DRAIN_EVERY, from 300000 ms
        "- Default: `15m`",  # WATCH_OLDEST
        "- Default: `redis://localhost:6379/0`",
    ):
        assert expected in text


def test_every_variable_the_code_reads_is_documented() -> None:
    documented = config_reference.documented_names()
    read: dict[str, str] = {}
    for folder in ("bot", "commands", "scheduler"):
        for path in (ROOT / folder).rglob("*.py"):
            for match in ENV_READ.finditer(path.read_text()):
                name = next(g for g in match.groups() if g)
                read.setdefault(name, str(path.relative_to(ROOT)))
    assert "QUEUEOPS_DEBUG" in read and "WORKER_INPROCESS" in read  # the scan finds them
    missing = {n: where for n, where in read.items() if n not in documented}
    assert not missing, f"read but not in docs/configuration.md: {missing}"


def test_docs_name_only_variables_that_exist() -> None:
    placeholders = {w for c in all_commands() for w in VARIABLE.findall(c.usage)}
    known = config_reference.documented_names() | placeholders
    for path in DOCS:
        unknown = set(VARIABLE.findall(path.read_text())) - known
        assert not unknown, f"{path.name} names variables queueops does not have: {unknown}"


def test_docs_say_what_things_are_not_where_they_came_from() -> None:
    for path in DOCS:
        text = path.read_text()
        assert not re.search(r"\bseeds?\b", text, re.IGNORECASE), path.name
        assert "DESIGN.md" not in text and "../shared" not in text, path.name


@pytest.fixture
def no_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for info in Settings.model_fields.values():
        monkeypatch.delenv(config_reference.env_name(info), raising=False)


@pytest.mark.usefixtures("no_settings_env")
def test_the_drain_token_chain_is_the_documented_one() -> None:
    assert "DRAIN_QUEUES_TOKEN, else CRON_SECRET, else CRON_TOKEN" in REFERENCE.read_text()
    names = ("DRAIN_QUEUES_TOKEN", "CRON_SECRET", "CRON_TOKEN")
    for first in range(3):
        given = {name: f"token-{name}" for name in names[first:]}
        token = Settings(**given).drain_token  # type: ignore[arg-type]
        assert token is not None and token.get_secret_value() == f"token-{names[first]}"
    assert Settings().drain_token is None


def test_worker_inprocess_is_what_mode_writes() -> None:
    text = REFERENCE.read_text()
    assert INPROCESS == {"cron": "0", "always-on": "1"}
    assert "`mode always-on` writes `1`" in text and "`mode cron` writes `0`" in text
