"""The DB queue's connections: a small psycopg pool, bounded statements, plain errors.

Every connection starts with `statement_timeout` and `lock_timeout` set through libpq's
`options` (no extra round trip per statement), so a locked or slow table fails a command
in QUEUE_JOBS_STATEMENT_TIMEOUT instead of hanging a slash command or the tick. Errors
become one line naming host:port/db (never the password, which libpq does not print but a
URL in a message might carry: every message goes through hide_url_credentials).
`statements` counts what queueops sent, as the Redis command counter does, for `budget`
and the benchmarks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from bot.durations import format_duration_ms
from bot.errors import DatabaseUnavailable, NotFound, OperationFailed, QueueOpsError, UsageError
from bot.urls import hide_url_credentials

# The pool's own reports of failed connections are several lines each; queueops says it
# once, as one line naming the server (Database.unavailable).
logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)

POOL_SIZE = 3
"""Connections at most: a snapshot, a tick and a bulk move at once, never a worker's share."""
CONNECT_TIMEOUT_S = 5


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split("\n")[0].split()) or type(err).__name__
    return hide_url_credentials(text)[:300]


class Database:
    """The pool to QUEUE_JOBS_DATABASE_URL, opened on first use and closed with `close`."""

    def __init__(self, url: str, *, location: str, statement_timeout_ms: int) -> None:
        self.location = location
        self.statement_timeout_ms = statement_timeout_ms
        self.statements = 0
        self._url = url
        self._kwargs: dict[str, Any] = {
            "options": f"-c statement_timeout={statement_timeout_ms}"
            f" -c lock_timeout={statement_timeout_ms}",
            "application_name": "queueops",
            "connect_timeout": CONNECT_TIMEOUT_S,
            "autocommit": False,
            # No server-side prepared statements: a generic plan made while the DLQ table
            # was small (its statistics stale until autovacuum analyses it) kept checking
            # each row against every DLQ row once that table had grown (bench/README.md).
            # A statement planned each time sees the table's current size.
            "prepare_threshold": None,
        }
        self._pool = self._new_pool()
        self._opened = False
        self._reachable = False
        self._open_lock = asyncio.Lock()

    def _new_pool(self) -> AsyncConnectionPool[Any]:
        return AsyncConnectionPool(
            self._url,
            min_size=0,
            max_size=POOL_SIZE,
            open=False,
            timeout=CONNECT_TIMEOUT_S + 1,
            kwargs=self._kwargs,
        )

    async def _check_reachable(self) -> None:
        """Before the first use, and after a failure: one direct connection, so a server
        that is down fails the command at once with libpq's reason ("Connection refused")
        instead of after the pool's wait, and the tick is not held up by it."""
        try:
            conn = await psycopg.AsyncConnection.connect(self._url, **self._kwargs)
        except psycopg.Error as err:
            raise self.unavailable(err) from None
        await conn.close()
        self._reachable = True

    async def close(self) -> None:
        """Close the pool; a later use opens a new one (a psycopg pool cannot reopen)."""
        if self._opened:
            await self._pool.close()
            self._opened = False
            self._pool = self._new_pool()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """One connection inside one transaction: committed when the block ends, rolled
        back when it raises (or when the process dies: the server aborts it)."""
        if not self._reachable:
            await self._check_reachable()
        if not self._opened:
            async with self._open_lock:
                if not self._opened:
                    await self._pool.open(wait=False)
                    self._opened = True
        try:
            async with self._pool.connection() as conn, conn.transaction():
                yield conn
        except QueueOpsError:
            raise
        except (pg_errors.QueryCanceled, pg_errors.LockNotAvailable):
            raise OperationFailed(
                f"PostgreSQL at {self.location} cancelled a statement after "
                f"{format_duration_ms(self.statement_timeout_ms)} (QUEUE_JOBS_STATEMENT_TIMEOUT):"
                " the table is locked or slow; nothing changed"
            ) from None
        except pg_errors.UndefinedTable as err:
            raise NotFound(f"PostgreSQL at {self.location}: {_first_line(err)}") from None
        except (pg_errors.InvalidTextRepresentation, pg_errors.NumericValueOutOfRange) as err:
            raise UsageError(f"not a valid job id: {_first_line(err)}") from None
        except (PoolTimeout, psycopg.OperationalError) as err:
            self._reachable = False
            raise self.unavailable(err) from None
        except psycopg.Error as err:
            raise OperationFailed(f"PostgreSQL at {self.location}: {_first_line(err)}") from None

    def unavailable(self, err: BaseException) -> DatabaseUnavailable:
        reason = _first_line(err)
        if isinstance(err, PoolTimeout):
            reason = f"no connection within {CONNECT_TIMEOUT_S + 1}s"
        return DatabaseUnavailable(
            f"cannot reach PostgreSQL at {self.location} (QUEUE_JOBS_DATABASE_URL): {reason}"
        )

    async def fetch(
        self, conn: psycopg.AsyncConnection[Any], query: Any, params: Any = None
    ) -> list[tuple[Any, ...]]:
        """Run one statement and return its rows (none for a statement without any)."""
        self.statements += 1
        cur = conn.cursor(row_factory=tuple_row)
        await cur.execute(query, params)
        return await cur.fetchall() if cur.description else []
