"""Command words: the same parser for Slack and the CLI, one clear line per mistake."""

from __future__ import annotations

import re
import shlex

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
    # Full names and Redis Cluster hash-tagged names (issue 12).
    tagged = parse("snapshot", "{orders}", "bull:{emails}", "intelliflow:notifications:email")
    assert tagged.queues == ("{orders}", "bull:{emails}", "intelliflow:notifications:email")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("words", "says"),
    [
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["dlq", "purge", "q"], "'dlq purge' is not a command; try dlq list, dlq replay"),
        (["quarantine", "q"], "give a JOB_ID, or --failed-matching"),
        (["quarantine", "q", "42"], "--reason is required"),
        (["quarantine", "q", "42", "--reason", "  "], "--reason: must not be empty"),
        (["quarantine", "q", "--failed-matching", "(unclosed"], "is not a valid regex"),
        (
            ["quarantine", "q", "--failed-matching", "x", "--limit", "0"],
            "--limit: must be at least 1 (got 0)",
        ),
        (
            ["quarantine", "q", "--failed-matching", "x", "--limit", "ten"],
            "--limit: 'ten' is not a whole number",
        ),
        (["quarantine", "bad/queue", "1", "--reason", "r"], "QUEUE: 'bad/queue' is not a queue"),
        (["quarantine", "q", "1", "--reason", "r", "--force"], "unknown option --force"),
        (["quarantine", "q", "1", "--reson", "r"], "did you mean '--reason'?"),
        (["dlq", "show", "q"], "missing JOB_ID"),
        (["dlq", "replay", "q", "--count", "-3"], "--count: must be at least 1 (got -3)"),
        (["pause"], "missing QUEUE"),
        (["snapshott"], "unknown command 'snapshott'; did you mean 'snapshot'?"),
        (["dlq", "lst", "q"], "'dlq lst' is not a command; did you mean 'dlq list'?"),
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
    assert asking == {
        "quarantine",
        "dlq replay",
        "mode",
        "rotate-token",
        "clean",
        "retry",
        "promote",
        "remove",
    }
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


# Mistakes across every command: none may show argparse's or pydantic's own names.
INTERNAL = ("_ms", "dest", "Input should", "parse_", "Value error", "job_id", "queues", "every_ms")
INTERNAL_RE = re.compile(r"\b[a-z]+_[a-z_]+\b")  # a snake_case name: a field, not a word


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("snapshot --chart x --frob", "unknown option --frob"),
        ("snapshot bad:na$me", "QUEUE: 'bad:na$me' is not a queue name"),
        ("quarantine", "missing QUEUE"),
        ("quarantine q 1 --reason r --limit", "--limit needs a value"),
        ("quarantine q --failed-matching x --limit 1.5", "--limit: '1.5' is not a whole number"),
        ("quarantine q 1 --reason " + "x" * 501, "--reason is too long (at most 500 characters)"),
        ("quarantine q 1:2 --reason r", "JOB_ID: '1:2' is not a job id"),
        ("dlq list", "missing QUEUE"),
        ("dlq list q --limit 0", "--limit: must be at least 1 (got 0)"),
        ("dlq list q --limit 501", "--limit: must be at most 500 (got 501)"),
        ("dlq show", "missing QUEUE and JOB_ID"),
        ("dlq replay q --count 0", "--count: must be at least 1 (got 0)"),
        ("dlq replay q --count lots", "--count: 'lots' is not a whole number"),
        # -- failures and find (issue 14) --
        ("failures q --scan ten", "--scan: 'ten' is not a whole number"),
        ("find q --state done", "--state: 'done' is not a job state"),
        ("find q --cluster xyz", "--cluster: 'xyz' is not a cluster key"),
        ("find q --data-path user.id", "--data-path: 'user.id' is not PATH=VALUE"),
        ("promote q", "give an ID, --all, or filters"),
        ("remove q", "give filters"),
        ("retry q --count 5 --name x", "give --count or filters, not both"),
        ("quarantine q 5 --cluster 0123abcd", "give a JOB_ID or filters, not both"),
        # -- queue actions (issue 14) --
        ("clean q --state done --older-than 1h", "--state: 'done' is not one of completed, failed"),
        ("clean q --state failed", "missing --older-than"),
        ("empty", "missing QUEUE"),
        ("obliterate q --confirm", "--confirm needs a value"),
        ("add q job '{nope'", "JSON is not valid: Expecting property name"),
        ("schedulers q extra", "unexpected words: extra"),
        # -- workers (issue 14) --
        ("workers a b", "unexpected words: b"),
        ('incident declare "x" --severity sev4', "--severity: 'sev4' is not one of sev1"),
        ("incident convert a b", "unexpected words: b"),
        ("incident lead bob", "USER: 'bob' is not a Slack user (mention them: @someone)"),
        ("incident severity high", "SEVERITY: 'high' is not one of sev1, sev2, sev3"),
        ("incident update", "missing TEXT"),
        ("incident followup", "missing TEXT"),
        ("incident followup " + "x" * 501, "TEXT is too long (at most 500 characters)"),
        # -- job detail and edit-then-replay (issue 14) --
        ("dlq replay q --set a.b=1", "--set and --patch edit one job: name its JOB_ID"),
        ("dlq replay q 1 --set ab", "--set: 'ab' is not PATH=VALUE (e.g. customer.id=42)"),
        ("dlq replay q 1 --patch '[1]'", "--patch: must be a JSON object"),
        ("dlq replay q 1 --count 2", "JOB_ID replays that one job; leave out --count"),
        ("job show q", "missing JOB_ID"),
        ("job show q 1:2", "JOB_ID: '1:2' is not a job id"),
        ("db init-dlq now", "unexpected words: now"),
        ("pause q extra", "unexpected words: extra"),
        ("resume", "missing QUEUE"),
        ("retry q --count 0", "--count: must be at least 1 (got 0)"),
        ("retry q --count x", "--count: 'x' is not a whole number"),
        ("drain --max-duration 5min", "--max-duration: '5min' is not a duration"),
        ("drain --max-duration 11m", "--max-duration: 11m is not within 1s and 10m"),
        ("drain --max-jobs 0", "--max-jobs: must be at least 1 (got 0)"),
        ("drain --concurrency 21", "--concurrency: must be at most 20 (got 21)"),
        ("cron status now", "unexpected words: now"),
        ("cron history --count 0", "--count: must be at least 1 (got 0)"),
        ("cron pause --all", "unknown option --all"),
        ("cron resume x", "unexpected words: x"),
        ("cron every 5 minutes", "'5 minutes' is not a duration (use e.g. 30s, 5m, 1h"),
        ("cron every", "missing DURATION"),
        ("cron every 500ms", "500ms is shorter than 1s"),
        ("budget --share 0", "--share: must be more than 0 (got 0)"),
        ("budget --share 101", "--share: must be at most 100 (got 101)"),
        ("budget --share half", "--share: 'half' is not a number"),
        ("mode sometimes", "MODE: 'sometimes' is not one of cron, always-on"),
        ("mode cron --every 5 minutes", "--every: '5' is not a duration"),
        ("mode cron --every soon", "--every: 'soon' is not a duration"),
        ("rotate-token --wait 5min", "--wait: '5min' is not a duration"),
        ("rotate-token --wait 2h", "--wait: 2h is not within 1s and 1h"),
        ("help --frob", "unknown option --frob"),
    ],
)
def test_mistakes_are_said_in_the_words_typed(line: str, says: str) -> None:
    with pytest.raises(UsageError) as err:
        parse(*shlex.split(line))
    message = str(err.value)
    assert says in message and "\n" not in message
    for name in INTERNAL:
        assert name not in message, message
    typed = set(shlex.split(line))
    assert not [w for w in INTERNAL_RE.findall(message) if w not in typed], message


def test_every_command_is_in_the_mistakes_table() -> None:
    table = test_mistakes_are_said_in_the_words_typed.pytestmark[0].args[1]  # type: ignore[attr-defined]
    tried = {resolve(shlex.split(line))[0].name for line, _ in table}
    assert tried == {c.name for c in all_commands()}
