"""Postgres fixtures: the session's server (postgres_for_tests), a fresh database per test,
an async psycopg connection to it, and the seed schema the runbook's queries expect.

Each test gets a database of its own (`qo_test_<hex10>`), dropped after even when the test
left connections open, so tests cannot see each other's rows and the suite can share an
outside server (`QUEUEOPS_TEST_PG_URL`, or the one on 5432) with real databases.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import pytest_asyncio
from postgres_for_tests import PG_URL, create_database, drop_database

SEED_SCHEMA = Path(__file__).resolve().parent / "fixtures" / "queue_jobs.sql"


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """The admin database of the session's server: for looking at pg_database and the
    like, never for a test's own tables."""
    return PG_URL


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """The URL of a database created for this test and dropped after it."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(urlsplit(url).path.lstrip("/"))


@pytest_asyncio.fixture
async def pg_conn(pg_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """An autocommit psycopg AsyncConnection to this test's database (each statement
    commits, as the runbook's queries run), closed after the test."""
    conn = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


async def load_seed_schema(conn: psycopg.AsyncConnection[Any]) -> None:
    """Create the runbook's `queue_jobs` table (tests/fixtures/queue_jobs.sql) on `conn`.

    The file holds several statements; psycopg runs them in one go because no parameters
    are passed (the simple query protocol).
    """
    await conn.execute(SEED_SCHEMA.read_text())
