"""The suite's own PostgreSQL: the session's server, a fresh database per test, the seed
schema, and the private cluster a machine without a server gets."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from pg_fixtures import load_seed_schema
from postgres_for_tests import (
    ENV,
    PRIVATE_ENV,
    PgStartError,
    create_database,
    drop_database,
    find_initdb,
    initdb_unavailable_reason,
    new_database_name,
    process_alive,
    start_private_cluster,
)

TESTS = Path(__file__).resolve().parent
QUEUE_JOBS_COLUMNS = [
    "id",
    "type",
    "status",
    "payload",
    "run_after",
    "created_at",
    "updated_at",
    "attempts",
    "last_error",
]

# The database names the fixture handed out so far, in order: a later test checks that an
# earlier test's database is gone (it is dropped as that test ends).
_SEEN_DATABASES: list[str] = []


def _require_initdb() -> None:
    """Without initdb the private-cluster tests are skipped locally, but fail under CI,
    where scripts/test installs PostgreSQL and a skip would hide a broken setup."""
    if find_initdb() is None:
        if os.environ.get("CI"):
            pytest.fail(initdb_unavailable_reason())
        pytest.skip(initdb_unavailable_reason())


def _databases(admin_url: str) -> set[str]:
    with psycopg.connect(admin_url) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


def _name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _refuses_connections(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.OperationalError:
        return True
    return False


def test_the_session_server_answers_select_1(pg_admin_url: str) -> None:
    with psycopg.connect(pg_admin_url, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert os.environ[ENV] == pg_admin_url  # child processes get the same server


async def test_pg_url_is_a_fresh_empty_database_of_its_own(
    pg_url: str, pg_conn: psycopg.AsyncConnection[Any]
) -> None:
    name = _name(pg_url)
    assert name.startswith("qo_test_")
    cur = await pg_conn.execute("SELECT current_database()")
    assert await cur.fetchone() == (name,)
    cur = await pg_conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
    )
    assert await cur.fetchone() == (0,)
    _SEEN_DATABASES.append(name)


def test_the_previous_tests_database_is_gone_and_this_one_differs(
    pg_url: str, pg_admin_url: str
) -> None:
    if not _SEEN_DATABASES:
        pytest.skip("checks the database of the test before it; run the whole file")
    earlier = _SEEN_DATABASES[-1]
    assert _name(pg_url) != earlier
    present = _databases(pg_admin_url)
    assert _name(pg_url) in present
    assert earlier not in present


def test_drop_database_drops_even_with_a_connection_still_open(pg_admin_url: str) -> None:
    name = new_database_name()
    url = create_database(name)
    assert _name(url) == name
    assert name in _databases(pg_admin_url)
    left_open = psycopg.connect(url)  # what a test that forgot to close leaves behind
    try:
        drop_database(name)
    finally:
        left_open.close()
    assert name not in _databases(pg_admin_url)
    drop_database(name)  # IF EXISTS: dropping twice is fine


def test_only_test_databases_can_be_created_or_dropped() -> None:
    with pytest.raises(ValueError, match="qo_test_"):
        drop_database("postgres")
    with pytest.raises(ValueError, match="qo_test_"):
        create_database("production")


async def test_load_seed_schema_creates_queue_jobs(pg_conn: psycopg.AsyncConnection[Any]) -> None:
    await load_seed_schema(pg_conn)
    cur = await pg_conn.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = 'queue_jobs' ORDER BY ordinal_position"
    )
    assert [row[0] for row in await cur.fetchall()] == QUEUE_JOBS_COLUMNS
    cur = await pg_conn.execute(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'queue_jobs' ORDER BY indexname"
    )
    assert [row[0] for row in await cur.fetchall()] == [
        "queue_jobs_pkey",
        "queue_jobs_status_run_after",
        "queue_jobs_status_updated_at",
    ]
    cur = await pg_conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    assert [row[0] for row in await cur.fetchall()] == ["queue_jobs"]  # no DLQ table

    cur = await pg_conn.execute(
        "INSERT INTO queue_jobs (type) VALUES ('email')"
        " RETURNING id IS NOT NULL, status, payload, attempts, last_error"
    )
    assert await cur.fetchone() == (True, "pending", {}, 0, None)


def test_a_private_cluster_starts_answers_and_is_gone_after_stop() -> None:
    _require_initdb()
    base = Path(tempfile.mkdtemp(prefix="qo-pg-test-"))  # reachable by the postgres user
    try:
        cluster = start_private_cluster(base)
    except PgStartError as err:
        pytest.fail(f"the private cluster did not start: {err}")
    try:
        assert cluster.port != 5432
        assert urlsplit(cluster.url).hostname == "127.0.0.1"
        assert process_alive(cluster.pid)
        with psycopg.connect(cluster.url, connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            assert conn.execute("SHOW fsync").fetchone() == ("off",)
            assert conn.execute("SHOW unix_socket_directories").fetchone() == (str(base),)
    finally:
        cluster.stop()
    assert not process_alive(cluster.pid)
    assert not base.exists()
    assert _refuses_connections(cluster.url)
    cluster.stop()  # idempotent


PRINT_SESSION = (
    "import postgres_for_tests as p;"
    "print(p.PG_URL, p.PRIVATE.pid if p.PRIVATE else 0, p.PRIVATE.base if p.PRIVATE else '',"
    " flush=True)"
)


def _import_in_a_child(env_extra: dict[str, str]) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV, PRIVATE_ENV)}
    env["PYTHONPATH"] = str(TESTS)
    out = subprocess.run(
        [sys.executable, "-c", PRINT_SESSION],
        env={**env, **env_extra},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout.split()


def test_with_private_set_the_import_starts_a_cluster_that_stops_with_the_process() -> None:
    _require_initdb()
    url, pid, base = _import_in_a_child({PRIVATE_ENV: "1"})
    assert urlsplit(url).port != 5432
    assert not process_alive(int(pid))  # stopped by the atexit hook
    assert not Path(base).exists()
    assert _refuses_connections(url)


def test_the_variable_points_the_session_at_an_outside_server() -> None:
    given = "postgresql://someone@db.example.invalid:6543/admin"
    assert _import_in_a_child({ENV: given, PRIVATE_ENV: "1"}) == [given, "0"]
