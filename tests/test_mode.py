"""Worker mode: the dotenv and App Runner backends, previews, confirmation, the cron moving
with the mode. App Runner through botocore's Stubber (requests checked against AWS's own
service model); properties with hypothesis."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis.asyncio as aioredis
from botocore.stub import ANY, Stubber
from conftest import REDIS_URL
from hypothesis import given
from hypothesis import strategies as st

from bot.config import load_settings
from bot.deploy.apprunner import AppRunnerBackend
from bot.deploy.base import apply_changes
from bot.deploy.dotenv import edit, parse
from bot.dispatch import make_dispatcher
from bot.roles import Role
from commands.runner import ConfirmationNeeded

DOTENV = (
    "# the app's settings\n"
    "DATABASE_URL='postgres://u:p@db/app'\n"
    "export WORKER_INPROCESS=1\n"
    "\n"
    'DRAIN_QUEUES_TOKEN="abcdef0123456789abcdef0123456789"\n'
    "FEATURE_X = on  \n"
)
OP_ID = "0c5bd3a3-2b4b-4f3b-9c2a-8f3e2d6f7a10"
ARN = "arn:aws:apprunner:us-east-1:123456789012:service/app/0123456789abcdef0123456789abcdef"


def dispatcher_for(redis: aioredis.Redis, prefix: str, **overrides: Any) -> Any:
    settings = load_settings(
        redis_url=REDIS_URL,
        prefix=prefix,
        state_prefix=f"{prefix}-state",
        queues="a",
        drain_url="http://127.0.0.1:9",
        cron_secret="t",
        **overrides,
    )
    return make_dispatcher(redis, settings, rate_limited=False)


async def run(dispatcher: Any, *words: str, confirmed: bool = True) -> Any:
    outcome = await dispatcher.run(
        list(words),
        actor="test",
        role=Role.ADMIN,
        transport="cli",
        confirmed=confirmed,
        terminal=True,
    )
    return outcome.reply


async def test_dotenv_round_trip_changes_one_line_and_restores_every_byte(
    tmp_path: Path, redis: aioredis.Redis, prefix: str
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(DOTENV)
    os.chmod(env_file, 0o640)
    d = dispatcher_for(redis, prefix, worker_mode_backend="dotenv", worker_mode_dotenv=env_file)
    assert (await run(d, "mode")).mode == "always-on"  # read from the file: WORKER_INPROCESS=1

    preview = await run(d, "mode", "cron", "--every", "15m", confirmed=False)
    assert isinstance(preview, ConfirmationNeeded)
    assert preview.preview.changes == [("WORKER_INPROCESS", "1", "0")]
    assert preview.preview.ops_after < preview.preview.ops_before
    assert "abcdef0123456789" not in str(preview.data())  # secrets never shown
    done = await run(d, *preview.words)
    assert done.mode == "cron" and done.verified
    assert env_file.read_text() == DOTENV.replace(
        "export WORKER_INPROCESS=1", "export WORKER_INPROCESS=0"
    )
    status = await d.cron.status()
    assert status.mode == "cron" and status.every_ms == 900_000 and status.enabled

    await run(d, "mode", "always-on")
    assert env_file.read_text() == DOTENV  # byte for byte
    assert oct(env_file.stat().st_mode & 0o777) == "0o640"
    assert not (await d.cron.status()).enabled  # always-on: the cron is off


async def test_a_change_after_the_preview_writes_nothing(
    tmp_path: Path, redis: aioredis.Redis, prefix: str
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(DOTENV)
    d = dispatcher_for(redis, prefix, worker_mode_backend="dotenv", worker_mode_dotenv=env_file)
    preview = await run(d, "mode", "cron", confirmed=False)
    env_file.write_text(DOTENV + "NEW_VAR=1\n")  # someone deploys meanwhile
    reply = await run(d, *preview.words)
    assert not reply.ok and "changed since the preview" in reply.message
    assert env_file.read_text() == DOTENV + "NEW_VAR=1\n"


def stubbed_apprunner(env: dict[str, str]) -> tuple[Any, Stubber]:
    client = boto3.client(
        "apprunner", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    return client, Stubber(client)


def describe(env: dict[str, str]) -> dict[str, Any]:
    return {
        "Service": {
            "ServiceName": "app-service",
            "ServiceId": "0123456789abcdef0123456789abcdef",
            "ServiceArn": ARN,
            "ServiceUrl": "app.awsapprunner.com",
            "CreatedAt": "2026-01-01T00:00:00Z",
            "UpdatedAt": "2026-01-01T00:00:00Z",
            "Status": "RUNNING",
            "SourceConfiguration": {
                "ImageRepository": {
                    "ImageIdentifier": "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:latest",
                    "ImageRepositoryType": "ECR",
                    "ImageConfiguration": {"Port": "3000", "RuntimeEnvironmentVariables": env},
                },
                "AutoDeploymentsEnabled": False,
            },
            "InstanceConfiguration": {"Cpu": "1024", "Memory": "2048"},
            "NetworkConfiguration": {"EgressConfiguration": {"EgressType": "DEFAULT"}},
            "AutoScalingConfigurationSummary": {
                "AutoScalingConfigurationArn": "arn:aws:apprunner:us-east-1:123456789012:"
                "autoscalingconfiguration/DefaultConfiguration/1/00000000000000000000000000000001",
                "AutoScalingConfigurationName": "DefaultConfiguration",
                "AutoScalingConfigurationRevision": 1,
            },
        }
    }


async def test_apprunner_switch_sends_the_whole_set_and_follows_the_operation(
    redis: aioredis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"DATABASE_URL": "postgres://x", "WORKER_INPROCESS": "1", "REDIS_URL": "rediss://y"}
    client, stub = stubbed_apprunner(env)
    for _ in range(3):  # preview read, run read, the write's re-read
        stub.add_response("describe_service", describe(env), {"ServiceArn": ARN})
    new_env = {**env, "WORKER_INPROCESS": "0"}
    source = describe(new_env)["Service"]["SourceConfiguration"]
    stub.add_response(
        "update_service",
        {**describe(new_env), "OperationId": OP_ID},
        {"ServiceArn": ARN, "SourceConfiguration": source},
    )
    stub.add_response(
        "list_operations",
        {
            "OperationSummaryList": [
                {"Id": OP_ID, "Type": "UPDATE_SERVICE", "Status": "IN_PROGRESS"}
            ]
        },
        {"ServiceArn": ARN, "MaxResults": ANY},
    )
    stub.add_response(
        "list_operations",
        {"OperationSummaryList": [{"Id": OP_ID, "Type": "UPDATE_SERVICE", "Status": "SUCCEEDED"}]},
        {"ServiceArn": ARN, "MaxResults": ANY},
    )
    stub.add_response("describe_service", describe(new_env), {"ServiceArn": ARN})
    monkeypatch.setattr(
        "commands.mode.backend_for", lambda settings: AppRunnerBackend(ARN, client, poll_s=0)
    )
    d = dispatcher_for(redis, prefix, worker_mode_backend="apprunner", apprunner_service_arn=ARN)
    with stub:
        preview = await run(d, "mode", "cron", confirmed=False)
        assert preview.preview.changes == [("WORKER_INPROCESS", "1", "0")]
        done = await run(d, *preview.words)
    stub.assert_no_pending_responses()
    assert done.ok and done.verified and done.mode == "cron"


NAMES = st.from_regex(r"[A-Z][A-Z0-9_]{0,15}", fullmatch=True)
VALUES = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)


@given(st.dictionaries(NAMES, VALUES, max_size=12), st.sampled_from(["0", "1"]))
def test_a_switch_changes_only_worker_inprocess(env: dict[str, str], value: str) -> None:
    after = apply_changes(env, {"WORKER_INPROCESS": value})
    assert after["WORKER_INPROCESS"] == value
    assert {k: v for k, v in after.items() if k != "WORKER_INPROCESS"} == {
        k: v for k, v in env.items() if k != "WORKER_INPROCESS"
    }


@given(
    st.lists(
        st.tuples(NAMES, st.from_regex(r"[A-Za-z0-9_./:-]{0,20}", fullmatch=True)), max_size=10
    ),
    st.sampled_from(["0", "1"]),
)
def test_dotenv_edit_touches_only_its_line(pairs: list[tuple[str, str]], value: str) -> None:
    text = "".join(f"{k}={v}\n" for k, v in pairs)
    edited = edit(text, {"WORKER_INPROCESS": value})
    assert parse(edited) == apply_changes(parse(text), {"WORKER_INPROCESS": value})
    kept = [line for line in text.splitlines() if not line.startswith("WORKER_INPROCESS=")]
    assert [
        line for line in edited.splitlines() if not line.startswith("WORKER_INPROCESS=")
    ] == kept
