"""Secrets never printed: a URL with `user:password@` is shown without them everywhere.

Every path that names a URL: the CLI (text and --json), configuration errors, Redis
unreachable, the drain client's errors, the audit stream, a Slack reply and the audit
channel. The password is distinctive so that finding it anywhere is a leak."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer
from cli_runner import run_cli
from slack_helpers import MakeBot, slash, text_of
from slack_stub import SlackStub

from bot.audit import redact_text, redact_words
from bot.config import load_settings
from bot.drain import DrainClient, DrainError
from bot.embedded_redis import free_port
from bot.errors import ConfigError

PASSWORD = "hunter2-s3cret"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{PASSWORD}@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        (f"rediss://default:{PASSWORD}@cache:6380/2", "rediss://cache:6380/2"),
        (f"http://ops:{PASSWORD}@app.example.com/", "http://app.example.com/"),
        (f"redis://:p@ss#{PASSWORD}@h:1/0", "redis://h:1/0"),  # unescaped @ and #
        (f"redis://h:1/0?password={PASSWORD}&db=2", "redis://h:1/0?password=***&db=2"),
        (f"https://h/x?token={PASSWORD}", "https://h/x?token=***"),
        ("https://h/a@b", "https://h/a@b"),  # an @ in the path is not a credential
        ("unix:///run/redis.sock?db=3", "unix:///run/redis.sock?db=3"),
        (f"ops:{PASSWORD}@app.example.com/drain", "app.example.com/drain"),  # no scheme
        (f"//ops:{PASSWORD}@app.example.com", "//app.example.com"),
    ],
)
def test_a_url_fit_to_show_has_no_credentials(url: str, shown: str) -> None:
    from bot.urls import url_fit_to_show

    assert url_fit_to_show(url) == shown


def test_the_redactor_removes_credentials_from_any_url() -> None:
    from bot.urls import hide_url_credentials

    text = f"cannot reach 'redis://u:{PASSWORD}@10.0.0.1:6379/0' nor http://:{PASSWORD}@app/x"
    assert PASSWORD not in redact_text(text)
    assert "redis://10.0.0.1:6379/0" in redact_text(text) and "http://app/x" in redact_text(text)
    assert hide_url_credentials(text) == redact_text(text)
    words = redact_words(["drain", f"http://u:{PASSWORD}@app", f"--password={PASSWORD}\nx"])
    assert PASSWORD not in words and "http://app" in words


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("REDIS_URL", f"redis://:{PASSWORD}@127.0.0.1:99999/0"),
        ("REDIS_URL", f"redis://:{PASSWORD}@127.0.0.1:6379/abc"),
        ("REDIS_URL", f"mysql://root:{PASSWORD}@db/0"),
        ("REDIS_URL", f"redis://:{PASSWORD}@127.0.0.1:6379/0?socket_timeout=abc"),
        ("DRAIN_URL", f"ftp://u:{PASSWORD}@app"),
        ("SLACK_API_URL", f"gopher://u:{PASSWORD}@slack"),
    ],
)
def test_configuration_errors_hide_the_password(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value).startswith(f"{var}: ") and PASSWORD not in str(err.value)


async def queueops(*args: str, **env: str) -> tuple[int, str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUEOPS_", "DRAIN"))}
    return await run_cli(args, {**inherited, **env}, within=30)


@pytest.mark.parametrize(
    ("env", "code", "says"),
    [
        ({"REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:99999/0"}, 2, "bad port"),
        ({"REDIS_URL": f"redis://u:{PASSWORD}@127.0.0.1:{free_port()}/0"}, 1, "unreachable"),
        ({"DRAIN_URL": f"http://u:{PASSWORD}@"}, 2, "DRAIN_URL"),
    ],
)
async def test_the_cli_never_prints_the_password(
    prefix: str, env: dict[str, str], code: int, says: str
) -> None:
    env = {"QUEUEOPS_PREFIX": prefix, "QUEUEOPS_STATE_PREFIX": f"{prefix}-state", **env}
    for as_json in ([], ["--json"]):
        rc, out, err = await queueops("snapshot", *as_json, **env)
        assert rc == code and says in err, err
        assert PASSWORD not in out + err and "Traceback" not in err
        if as_json:
            assert says in json.loads(out)["error"]


async def test_a_drain_error_names_the_host_not_the_password(
    redis_url: str, redis: aioredis.Redis, prefix: str
) -> None:
    port = free_port()  # nothing listens: connection refused
    env = {
        "REDIS_URL": redis_url,
        "QUEUEOPS_PREFIX": prefix,
        "QUEUEOPS_STATE_PREFIX": f"{prefix}-state",
        "DRAIN_URL": f"http://ops:{PASSWORD}@127.0.0.1:{port}",
        "DRAIN_QUEUES_TOKEN": "t0ken",
    }
    rc, out, err = await queueops("drain", "--json", **env)
    assert rc == 1 and f"cannot reach the app at 127.0.0.1:{port} (DRAIN_URL)" in err
    assert PASSWORD not in out + err
    [(_, entry)] = await redis.xrange(f"{prefix}-state:audit")
    assert entry["command"] == "drain" and f"127.0.0.1:{port}" in entry["message"]
    assert PASSWORD not in json.dumps(entry)


@pytest_asyncio.fixture
async def echoing_app() -> Any:
    """An app whose errors quote the URL it was called with, credentials and all."""
    statuses = [401, 500, 400]

    async def drain(request: web.Request) -> web.Response:
        status = statuses.pop(0)
        echo = f"bad call to http://ops:{PASSWORD}@{request.host}{request.path_qs}"
        return web.json_response({"error": echo}, status=status)

    app = web.Application()
    app.router.add_post("/api/v1/cron/drain-queues", drain)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def test_drain_client_errors_never_carry_the_password(echoing_app: TestServer) -> None:
    base = f"http://ops:{PASSWORD}@127.0.0.1:{echoing_app.port}"
    client = DrainClient(base, "t0ken", attempts=1)
    for status in (401, 500, 400):
        with pytest.raises(DrainError) as err:
            await client.drain()
        assert err.value.status == status and PASSWORD not in str(err.value)
        assert f"127.0.0.1:{echoing_app.port}" in str(err.value)
    closed = DrainClient(f"http://ops:{PASSWORD}@127.0.0.1:{free_port()}", "t", attempts=1)
    with pytest.raises(DrainError) as refused:
        await closed.drain()
    assert "cannot reach the app at 127.0.0.1:" in str(refused.value)
    assert PASSWORD not in str(refused.value)


async def test_slack_reply_audit_channel_and_stream_hide_the_password(
    make_bot: MakeBot, slack: SlackStub, redis: aioredis.Redis, prefix: str
) -> None:
    port = free_port()
    bot = await make_bot(
        drain_url=f"http://ops:{PASSWORD}@127.0.0.1:{port}",
        drain_queues_token="t0ken",
        audit_channel="CAUDIT01",
    )
    await slash(bot, slack, "drain", user="UOPS")
    [reply] = await slack.wait_for("respond:r1", within=10)
    assert f"cannot reach the app at 127.0.0.1:{port}" in text_of(reply.body)
    await slack.wait_for("chat.postMessage")
    rows = await redis.xrange(f"{prefix}-state:audit")
    assert rows and rows[0][1]["command"] == "drain"
    everything = json.dumps([c.body for c in slack.calls]) + json.dumps(rows)
    assert PASSWORD not in everything
