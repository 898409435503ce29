"""Postgres engine: an asyncpg pool reached from Trio through trio-asyncio.

`PostgresStore` is composed of its parts, one module each: the bridge every call crosses
(`_postgres_bridge`), the event log (`_postgres_events`), batches (`_postgres_batches`) and the
webhook outbox with the audit log (`_postgres_outbox`); what both engines share comes from
`_engine_base.Engine`. This module opens the pool, migrates the schema and runs the committer.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from urllib.parse import urlsplit

import asyncpg
import trio
import trio_asyncio

from . import _migrations, _sql
from ._engine_base import Engine
from ._postgres_batches import PostgresBatches
from ._postgres_bridge import current_or_own_loop, init_connection
from ._postgres_events import PostgresEvents
from ._postgres_fencing import PostgresFencing
from ._postgres_outbox import PostgresOutbox
from ._postgres_retention import PostgresRetention
from ._util import background
from .base import Json, StoreOpenFailed
from .group_commit import GroupCommitter

_LOCK_ID = 0x6F72_6465_7264  # advisory lock serialising concurrent migrators
_CONNECT_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


def unreachable(url: str, exc: BaseException) -> StoreOpenFailed:
    """`cannot reach Postgres at host:port/db: cause`; the URL's user and password stay out."""
    parts = urlsplit(url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"
    return StoreOpenFailed(f"cannot reach Postgres at {where}: {_cause(exc)}")


def _cause(exc: BaseException) -> str:
    """The OS's words for a socket error (asyncio's own text repeats the address)."""
    if isinstance(exc, OSError) and exc.errno and exc.errno > 0:
        return os.strerror(exc.errno).lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


async def _migrate(conn: asyncpg.Connection) -> list[int]:
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
        await conn.execute(_migrations.CREATE_TABLE)
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in _migrations.load("postgres"):
            if migration.version in done:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                _sql.RECORD_MIGRATION.postgres, migration.version, migration.name, time.time()
            )
            applied.append(migration.version)
    return applied


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release, instead of asyncpg's `RESET ALL; UNLISTEN *; ...` (a round
    trip on every store call): nothing here changes a session (no SET, LISTEN, session advisory
    lock or cursor), and asyncpg still rolls back a transaction left open before calling it."""


async def _select_one(conn: asyncpg.Connection) -> None:
    await conn.fetchval("SELECT 1")


class PostgresStore(
    Engine, PostgresFencing, PostgresEvents, PostgresBatches, PostgresOutbox, PostgresRetention
):
    """The `Store` on Postgres. Build it with `open_postgres` (or `store.open_store`)."""

    engine = "postgres"

    def __init__(self, pool: asyncpg.Pool, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(pool, loop)
        self._committer = GroupCommitter(self._write_round)

    async def _ping(self) -> None:
        await self._call(_select_one)

    def _health_extra(self) -> Json:
        return {"pool_size": self._pool.get_size()}

    async def _sleep_in_db(self, seconds: float) -> None:
        """Test hook: hold a pooled connection in a server-side sleep."""

        async def q(conn: asyncpg.Connection) -> None:
            await conn.execute("SELECT pg_sleep($1)", seconds)

        await self._call(q)


#: A transaction left open by a process that stopped mid-way (paused, frozen, swapped out) would
#: keep its row locks, and with them the `FOR SHARE` lock on an account's owner row that a new
#: owner's epoch claim must wait for: a takeover would hang for as long as the old owner is
#: paused. Our transactions never wait on anything but Postgres, so one idle in a transaction for
#: 2 s has a stalled client; Postgres ends its session (its writes are retried, or refused by
#: epoch once another node has claimed the account). The timeout does not run while a session
#: waits between the messages of one statement (asyncpg prepares with Flush, not Sync, and binds
#: next): a claim ends such a session itself (`_postgres_fencing`).
SESSION_SETTINGS = {"idle_in_transaction_session_timeout": "2s"}


@asynccontextmanager
async def open_postgres(url: str, *, pool_size: int = 10) -> AsyncIterator[PostgresStore]:
    """Connect a pool, apply migrations, run the committer; close everything on exit."""
    async with AsyncExitStack() as stack:
        loop = await current_or_own_loop(stack)
        try:
            pool = await trio_asyncio.aio_as_trio(asyncpg.create_pool, loop=loop)(
                url, min_size=1, max_size=pool_size, init=init_connection, reset=_keep_session,
                server_settings=SESSION_SETTINGS,
            )
        except _CONNECT_ERRORS as exc:
            raise unreachable(url, exc) from exc
        try:
            store = PostgresStore(pool, loop)
            await store._call(_migrate)
            async with background(store._committer.run):
                yield store
        finally:
            with trio.move_on_after(5, shield=True) as scope:
                await trio_asyncio.aio_as_trio(pool.close, loop=loop)()
            if scope.cancelled_caught:
                pool.terminate()


async def migrate_postgres(url: str) -> list[int]:
    """Apply pending migrations (for `orderdesk migrate`); returns the versions applied."""
    async with AsyncExitStack() as stack:
        loop = await current_or_own_loop(stack)

        async def run() -> list[int]:
            conn = await asyncpg.connect(url)
            try:
                return await _migrate(conn)
            finally:
                await conn.close()

        try:
            return await trio_asyncio.aio_as_trio(run, loop=loop)()
        except _CONNECT_ERRORS as exc:
            raise unreachable(url, exc) from exc


async def read_owners(url: str) -> list[Json]:
    """The `account_owner` rows at `url`, on a connection of their own (no pool, no migration:
    `orderdesk cluster` only reads); none in a database never migrated to version 4."""
    async with AsyncExitStack() as stack:
        loop = await current_or_own_loop(stack)

        async def run() -> list[Json]:
            conn = await asyncpg.connect(url, timeout=5)
            try:
                rows = await conn.fetch(
                    "SELECT account, epoch, node, acquired_at FROM account_owner ORDER BY account")
            except asyncpg.UndefinedTableError:
                return []
            finally:
                await conn.close()
            return [dict(r) for r in rows]

        try:
            return await trio_asyncio.aio_as_trio(run, loop=loop)()
        except _CONNECT_ERRORS as exc:
            raise unreachable(url, exc) from exc
