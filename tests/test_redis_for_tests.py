"""The suite's own Redis: private by default, an outside one only when asked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bot.embedded_redis import answers_ping

TESTS = Path(__file__).resolve().parent
PRINT_URL = "import redis_for_tests; print(redis_for_tests.REDIS_URL, flush=True)"


def run(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k != "QUEUEOPS_TEST_REDIS_URL"}
    env["PYTHONPATH"] = str(TESTS)
    out = subprocess.run(
        [sys.executable, "-c", PRINT_URL],
        env={**env, **env_extra},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout.strip()


def test_without_the_variable_a_private_server_starts_on_a_free_port_and_stops_after() -> None:
    url = run({})
    host_port = url.removeprefix("redis://").split("/")[0]
    host, port = host_port.split(":")
    assert host == "127.0.0.1"
    assert int(port) != 6379  # never a user's own Redis
    assert not answers_ping(host, int(port))  # gone with the process that started it


def test_the_variable_points_the_session_at_an_outside_redis() -> None:
    assert run({"QUEUEOPS_TEST_REDIS_URL": "redis://example.invalid:1/3"}) == (
        "redis://example.invalid:1/3"
    )
