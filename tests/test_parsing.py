"""Command words: the same parser for Slack and the CLI, one clear line per mistake."""

from __future__ import annotations

import pytest

from bot.errors import UsageError
from commands.registry import all_commands, resolve


def parse(*words: str) -> object:
    command, rest = resolve(list(words))
    return command.parse(rest)


def test_every_command_resolves_by_its_words() -> None:
    for command in all_commands():
        assert resolve([*command.name.split(), "x"])[0] is command


def test_valid_words_become_requests() -> None:
    req = parse("quarantine", "batch-jobs", "42", "--reason", "bad pdf")
    assert req.model_dump() == {  # type: ignore[attr-defined]
        "queue": "batch-jobs",
        "job_id": "42",
        "reason": "bad pdf",
        "failed_matching": None,
        "limit": 100,
        "deep": False,
    }
    bulk = parse("quarantine", "q", "--failed-matching", "ECONN.*", "--limit", "500")
    assert bulk.failed_matching == "ECONN.*" and bulk.limit == 500  # type: ignore[attr-defined]
    assert parse("dlq", "replay", "q").count == 10  # type: ignore[attr-defined]
    assert parse("retry", "q").count is None  # type: ignore[attr-defined]
    assert parse("snapshot").queues == ()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("words", "says"),
    [
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["dlq", "purge", "q"], "'dlq purge' is not a command; try dlq list, dlq replay"),
        (["quarantine", "q"], "give a JOB_ID, or --failed-matching"),
        (["quarantine", "q", "42"], "--reason is required"),
        (["quarantine", "q", "42", "--reason", "  "], "--reason: String should have at least"),
        (["quarantine", "q", "--failed-matching", "(unclosed"], "is not a valid regex"),
        (["quarantine", "q", "--failed-matching", "x", "--limit", "0"], "--limit: Input should be"),
        (["quarantine", "q", "--failed-matching", "x", "--limit", "ten"], "invalid int value"),
        (["quarantine", "bad:queue", "1", "--reason", "r"], "QUEUE: 'bad:queue' is not a queue"),
        (["quarantine", "q", "1", "--reason", "r", "--force"], "unrecognized arguments: --force"),
        (["dlq", "show", "q"], "the following arguments are required: job_id"),
        (["dlq", "replay", "q", "--count", "-3"], "--count: Input should be greater than"),
        (["pause"], "the following arguments are required: queue"),
    ],
)
def test_mistakes_are_one_usage_line(words: list[str], says: str) -> None:
    with pytest.raises(UsageError) as err:
        parse(*words)
    assert says in str(err.value) and "\n" not in str(err.value)
    assert err.value.exit_code == 2


def test_the_commands_that_act_in_bulk_ask_for_confirmation() -> None:
    from commands.registry import all_commands

    asking = {c.name for c in all_commands() if c.preview is not None}
    assert asking == {"quarantine", "dlq replay", "mode", "rotate-token"}
    terminal = {c.name for c in all_commands() if c.confirm_in_terminal}
    assert terminal == {"mode", "rotate-token"}  # the CLI asks only for deployment changes
    quarantine, rest = resolve(["quarantine", "q", "1", "--reason", "r"])
    assert not quarantine.confirm(quarantine.parse(rest))
    bulk, rest = resolve(["quarantine", "q", "--failed-matching", "x"])
    assert bulk.confirm(bulk.parse(rest))


@pytest.mark.parametrize(
    "words",
    [
        ("snapshot", "orders\n"),
        ("pause", "orders\n"),
        ("quarantine", "orders\n", "1", "--reason", "x"),
        ("dlq", "list", "orders\n"),
        ("drain", "orders\n"),
    ],
)
def test_a_trailing_newline_is_not_a_valid_name(words: tuple[str, ...]) -> None:
    with pytest.raises(UsageError):
        parse(*words)


@pytest.mark.parametrize(
    ("words", "says"),
    [
        (("cron", "every", "99999d"), "longer than a year"),
        (("cron", "every", "1d1s"), "longer than 1d, the slowest cadence"),
        (("cron", "every", "500ms"), "shorter than 1s, the fastest cadence"),
        (("mode", "cron", "--every", "2d"), "longer than 1d"),
        (("drain", "--max-duration", "99999999d"), "longer than a year"),
    ],
)
def test_cadences_and_durations_have_upper_bounds(words: tuple[str, ...], says: str) -> None:
    with pytest.raises(UsageError, match=says) as err:
        parse(*words)
    assert "\n" not in str(err.value)


def test_a_day_is_the_slowest_cadence() -> None:
    assert parse("cron", "every", "1d").every_ms == 86_400_000  # type: ignore[attr-defined]
