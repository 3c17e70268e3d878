"""Several Redis deployments (QUEUEOPS_REDIS_URLS): two environments on two separate private
redis-servers (the session's, as `prod`, and one started here, as `staging`), with npm
bullmq adding the jobs in each; the CLI, Slack roles scoped per environment, the
configuration's errors, and the cron ticking each environment for one command when idle."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from cli_runner import run_cli
from drain_helpers import (
    TOKEN,
    add_jobs,
    requests_seen,
    start_endpoint,
    stop_endpoint,
)
from node_bullmq import node_available, node_bullmq, node_unavailable_reason
from redis_for_tests import REDIS_URL, delete_prefix
from slack_helpers import BOT_TOKEN, SECRET, slash, text_of
from slack_stub import SlackStub

from bot.config import load_settings
from bot.embedded_redis import embedded_redis
from bot.environments import Environments, split_env
from bot.errors import ConfigError, UsageError
from bot.http_app import ENV_TICKS, TICKER, build_app
from bot.redis_client import commands_sent
from bot.roles import Role, RoleGrants


@pytest.fixture(scope="module")
def staging_url() -> Iterator[str]:
    """A second private redis-server: the staging environment."""
    with embedded_redis() as (url, _):
        yield url


@pytest_asyncio.fixture
async def staging(staging_url: str, prefix: str) -> AsyncIterator[aioredis.Redis]:
    client: aioredis.Redis = aioredis.Redis.from_url(staging_url, decode_responses=True)
    yield client
    await delete_prefix(client, prefix)
    await client.aclose()


@pytest.fixture
def npm() -> None:
    if not node_available():
        if os.environ.get("CI"):
            pytest.fail(node_unavailable_reason())
        pytest.skip(node_unavailable_reason())


@pytest.fixture(autouse=True)
def no_outside_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("QUEUEOPS_", "DRAIN", "CRON_", "SLACK_")) and name != (
            "QUEUEOPS_TEST_REDIS_URL"
        ):
            monkeypatch.delenv(name)
    monkeypatch.delenv("REDIS_URL", raising=False)


def urls(staging_url: str) -> str:
    return f"prod={REDIS_URL},staging={staging_url}"


async def cli(*args: str, prefix: str, staging_url: str, **env: str) -> tuple[int, str, str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("QUEUEOPS_", "DRAIN", "CRON_", "SLACK_")) and k != "REDIS_URL"
    }
    return await run_cli(
        args,
        {
            **clean,
            "QUEUEOPS_REDIS_URLS": urls(staging_url),
            "QUEUEOPS_PREFIX": prefix,
            "QUEUEOPS_STATE_PREFIX": f"{prefix}-state",
            **env,
        },
    )


async def add(url: str, prefix: str, queue: str, names: list[str]) -> None:
    await node_bullmq(
        "add", {"prefix": prefix, "queue": queue, "jobs": [{"name": n} for n in names]}, url
    )


@pytest.mark.usefixtures("npm")
async def test_snapshot_shows_each_environment_and_env_picks_one(
    staging_url: str, staging: aioredis.Redis, prefix: str
) -> None:
    await add(REDIS_URL, prefix, "orders", ["a", "b"])
    await add(staging_url, prefix, "orders", ["c"])
    await add(staging_url, prefix, "emails", ["d"])
    prod_counts = await node_bullmq("counts", {"prefix": prefix, "queues": ["orders"]}, REDIS_URL)
    staging_counts = await node_bullmq(
        "counts", {"prefix": prefix, "queues": ["emails", "orders"]}, staging_url
    )

    code, out, err = await cli("snapshot", "--json", prefix=prefix, staging_url=staging_url)
    assert code == 0, err
    doc = json.loads(out)
    assert list(doc["environments"]) == ["prod", "staging"]
    prod = {q["name"]: q["counts"] for q in doc["environments"]["prod"]["queues"]}
    stag = {q["name"]: q["counts"] for q in doc["environments"]["staging"]["queues"]}
    assert prod == prod_counts and stag == staging_counts
    assert prod["orders"]["waiting"] == 2 and stag["orders"]["waiting"] == 1

    code, text, err = await cli("snapshot", prefix=prefix, staging_url=staging_url)
    assert code == 0, err
    assert "environment prod" in text and "environment staging" in text
    assert text.index("environment prod") < text.index("emails")

    for args in (
        ("snapshot", "--env", "staging", "--json"),
        ("--env=staging", "snapshot", "--json"),
    ):
        code, out, err = await cli(*args, prefix=prefix, staging_url=staging_url)
        assert code == 0, err
        only = json.loads(out)
        assert set(only) == {"queues"}  # the shape of a snapshot of one Redis, as before
        assert {q["name"]: q["counts"] for q in only["queues"]} == staging_counts

    code, out, err = await cli("snapshot", "--env", "qa", prefix=prefix, staging_url=staging_url)
    assert code == 2 and out == ""
    assert err.strip() == "queueops: unknown environment 'qa' (known: prod, staging)"

    # A change runs in the environment named, and only there.
    code, _, err = await cli(
        "pause", "orders", "--env", "staging", prefix=prefix, staging_url=staging_url
    )
    assert code == 0, err
    paused = {"prefix": prefix, "queue": "orders"}
    assert (await node_bullmq("is-paused", paused, staging_url))["paused"] is True
    assert (await node_bullmq("is-paused", paused, REDIS_URL))["paused"] is False


async def test_one_environment_snapshot_is_as_before(prefix: str, staging_url: str) -> None:
    for env in ([], ["--env", "default"]):
        code, out, err = await cli(
            "snapshot",
            *env,
            "--json",
            prefix=prefix,
            staging_url=staging_url,
            QUEUEOPS_REDIS_URLS="",
            REDIS_URL=REDIS_URL,
        )
        assert code == 0, err
        assert set(json.loads(out)) == {"queues"}


def test_env_words_anywhere() -> None:
    assert split_env(["pause", "q", "--env", "prod"]) == ("prod", ["pause", "q"])
    assert split_env(["--env=prod", "snapshot"]) == ("prod", ["snapshot"])
    assert split_env(["snapshot"]) == (None, ["snapshot"])
    with pytest.raises(UsageError, match="--env needs"):
        split_env(["snapshot", "--env"])
    settings = load_settings(redis_urls="prod=redis://a:6379,staging=redis://b:6379")
    envs = Environments(settings, rate_limited=False)
    assert envs.names == ["prod", "staging"] and envs.default == "prod"
    with pytest.raises(UsageError, match=r"unknown environment 'qa' \(known: prod, staging\)"):
        envs.pick(["snapshot", "--env", "qa"])


def test_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(
        redis_urls="prod=redis://p:6379/0?socket_timeout=5,staging-eu=redis://s:6379"
    )
    assert settings.environments == ["prod", "staging-eu"] and settings.default_env == "prod"
    assert settings.for_env("staging-eu").redis_url == "redis://s:6379"
    assert settings.for_env("prod").redis_url == "redis://p:6379/0?socket_timeout=5"
    both = load_settings(redis_url="redis://d:6379", redis_urls="prod=redis://p:6379")
    assert both.environments == ["default", "prod"]
    assert both.for_env("prod").env_name == "prod" and both.for_env("prod").environments == [
        "default",
        "prod",
    ]
    assert load_settings().environments == ["default"]

    monkeypatch.setenv("DRAIN_URL_STAGING_EU", "https://staging.example.com")
    monkeypatch.setenv("DRAIN_QUEUES_TOKEN_STAGING_EU", "tok-eu")
    monkeypatch.setenv("CRON_SECRET", "prod-secret")
    settings = load_settings(redis_urls="prod=redis://p:6379,staging-eu=redis://s:6379")
    eu = settings.for_env("staging-eu")
    assert eu.drain_url == "https://staging.example.com"
    assert eu.drain_token is not None and eu.drain_token.get_secret_value() == "tok-eu"
    prod = settings.for_env("prod")
    assert prod.drain_token is not None and prod.drain_token.get_secret_value() == "prod-secret"

    def error(**values: Any) -> str:
        with pytest.raises(ConfigError) as caught:
            load_settings(**values)
        message = str(caught.value)
        assert "\n" not in message
        return message

    assert error(redis_urls="Prod=redis://p:6379").startswith(
        "QUEUEOPS_REDIS_URLS: 'Prod' is not an environment name"
    )
    assert error(redis_urls="prod=redis://p:6379,prod=redis://q:6379") == (
        "QUEUEOPS_REDIS_URLS: the environment 'prod' is named twice"
    )
    bad = error(redis_urls="prod=redis://admin:hunter2@p:notaport/0")
    assert bad.startswith("QUEUEOPS_REDIS_URLS: prod: ") and "bad port" in bad
    assert "hunter2" not in bad and "admin" not in bad
    assert "hunter2" not in error(redis_urls="prod=http://u:hunter2@p:6379")
    assert error(redis_urls="redis://p:6379").startswith("QUEUEOPS_REDIS_URLS: ")
    assert error(redis_url="redis://d:6379", redis_urls="default=redis://p:6379").startswith(
        "QUEUEOPS_REDIS_URLS: 'default' is REDIS_URL's environment"
    )
    assert error(redis_urls="prod=redis://p:6379", roles="admin@qa=U111") == (
        "QUEUEOPS_ROLES: '@qa' names no environment (known: prod)"
    )
    monkeypatch.setenv("DRAIN_URL_STAGING_EU", "ftp://u:hunter2@x")
    message = error(redis_urls="staging-eu=redis://s:6379")
    assert message.startswith("DRAIN_URL_STAGING_EU: ") and "hunter2" not in message


def test_roles_scoped_per_environment() -> None:
    grants = RoleGrants.parse("admin@prod=U111;operator=U111,U222;viewer@staging=U222")
    assert grants.role_of({"U111"}, "prod") is Role.ADMIN
    assert grants.role_of({"U111"}, "staging") is Role.OPERATOR
    assert grants.role_of({"U111"}) is Role.OPERATOR
    assert grants.role_of({"U333"}, "prod") is Role.VIEWER  # viewers open in prod
    assert grants.role_of({"U333"}, "staging") is Role.ANYONE  # restricted in staging
    with pytest.raises(ValueError, match="is not an environment name"):
        RoleGrants.parse("admin@Prod!=U111")


@pytest_asyncio.fixture
async def slack_bot(
    slack: SlackStub, prefix: str, staging_url: str
) -> AsyncIterator[TestClient[Any, Any]]:
    settings = load_settings(
        redis_urls=urls(staging_url),
        prefix=prefix,
        state_prefix=f"{prefix}-state",
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SECRET,
        slack_api_url=slack.api_url,
        roles="admin@prod=UPRODADMIN;operator=UOPS",
    )
    client = TestClient(TestServer(await build_app(settings), host="127.0.0.1"))
    await client.start_server()
    yield client
    await client.close()


@pytest.mark.usefixtures("npm")
async def test_a_role_scoped_to_prod_pauses_in_prod_only(
    slack_bot: TestClient[Any, Any],
    slack: SlackStub,
    staging_url: str,
    staging: aioredis.Redis,
    prefix: str,
) -> None:
    await add(REDIS_URL, prefix, "orders", ["a"])
    await add(staging_url, prefix, "orders", ["b"])
    paused = {"prefix": prefix, "queue": "orders"}

    await slash(slack_bot, slack, "pause orders --env staging", user="UPRODADMIN", reply_to="s")
    [refused] = await slack.wait_for("respond:s")
    assert "needs the operator role; slack:UPRODADMIN has viewer" in text_of(refused.body)
    assert (await node_bullmq("is-paused", paused, staging_url))["paused"] is False

    await slash(slack_bot, slack, "pause orders --env prod", user="UPRODADMIN", reply_to="p")
    [done] = await slack.wait_for("respond:p")
    assert done.body["response_type"] == "in_channel", text_of(done.body)
    assert (await node_bullmq("is-paused", paused, REDIS_URL))["paused"] is True
    assert (await node_bullmq("is-paused", paused, staging_url))["paused"] is False

    await slash(slack_bot, slack, "snapshot", user="UVIEW", reply_to="snap")
    [snap] = await slack.wait_for("respond:snap")
    shown = text_of(snap.body)
    assert "environment prod" in shown and "environment staging" in shown

    await slash(slack_bot, slack, "snapshot --env nowhere", user="UVIEW", reply_to="bad")
    [bad] = await slack.wait_for("respond:bad")
    assert bad.body["response_type"] == "ephemeral"
    assert "unknown environment 'nowhere' (known: prod, staging)" in text_of(bad.body)


async def test_the_cron_drains_each_environment_and_idles_at_one_command_each(
    monkeypatch: pytest.MonkeyPatch, prefix: str, staging_url: str, staging: aioredis.Redis
) -> None:
    prod_app = await start_endpoint(prefix, REDIS_URL)
    staging_app = await start_endpoint(prefix, staging_url)
    bot: TestClient[Any, Any] | None = None
    try:
        monkeypatch.setenv("DRAIN_URL_PROD", prod_app.url)
        monkeypatch.setenv("DRAIN_URL_STAGING", staging_app.url)
        monkeypatch.setenv("DRAIN_QUEUES_TOKEN_PROD", TOKEN)
        monkeypatch.setenv("DRAIN_QUEUES_TOKEN_STAGING", TOKEN)
        settings = load_settings(
            redis_urls=urls(staging_url),
            prefix=prefix,
            state_prefix=f"{prefix}-state",
            queues="a,b",
            drain_every_ms=3_600_000,
            drain_instant=False,
        )
        bot = TestClient(TestServer(await build_app(settings), host="127.0.0.1"))
        await bot.start_server()
        tickers = [bot.app[TICKER], *(t.ticker for t in bot.app[ENV_TICKS])]
        assert len(tickers) == 2 and all(t.cron is not None for t in bot.app[ENV_TICKS])
        for ticker in tickers:  # the first tick loads the script
            await ticker.tick()
        for ticker in tickers:
            before = commands_sent()
            await ticker.tick()
            assert commands_sent() - before == 1
            assert ticker.idle_tick_cost == 1
        assert await requests_seen(prod_app) == [] and await requests_seen(staging_app) == []

        await add_jobs(staging_url, prefix, "a", ["one", "two"])
        for ticker in tickers:
            await ticker.tick()
        [call] = await requests_seen(staging_app, 3)
        assert (call["queue"], call["status"], call["processed"]) == ("a", 200, 2)
        assert await requests_seen(prod_app) == []
        history = await staging.lrange(f"{prefix}-state:cron:history", 0, -1)
        assert json.loads(history[0])["processed"] == 2

        await add_jobs(REDIS_URL, prefix, "b", ["three"])
        for ticker in tickers:
            await ticker.tick()
        [call] = await requests_seen(prod_app, 3)
        assert (call["queue"], call["status"], call["processed"]) == ("b", 200, 1)
        assert await requests_seen(staging_app) == []
    finally:
        if bot is not None:
            await bot.close()
        await stop_endpoint(prod_app)
        await stop_endpoint(staging_app)


@pytest.mark.usefixtures("npm")
async def test_the_shell_takes_env_too(
    staging_url: str, staging: aioredis.Redis, prefix: str
) -> None:
    await add(staging_url, prefix, "emails", ["d"])
    code, out, err = await cli(
        "shell",
        "-e",
        "/queue snapshot --env staging --json",
        prefix=prefix,
        staging_url=staging_url,
    )
    assert code == 0, err
    assert [q["name"] for q in json.loads(out)["queues"]] == ["emails"]
    code, out, err = await cli(
        "shell", "-e", "snapshot --json", prefix=prefix, staging_url=staging_url
    )
    assert code == 0, err
    doc = json.loads(out)["environments"]
    assert doc["prod"]["queues"] == [] and doc["staging"]["queues"][0]["name"] == "emails"
    code, out, _ = await cli(
        "shell", "-e", "snapshot --env qa", prefix=prefix, staging_url=staging_url
    )
    assert code == 2 and "unknown environment 'qa' (known: prod, staging)" in out
