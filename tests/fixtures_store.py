"""Fixtures for the store: a throwaway Postgres database per session, SQLite per test.

Use them like this:

- `store` — an open Store, parametrised over ["sqlite", "postgres"]; every test gets empty tables.
- `store_url` — the URL instead (same params), to open/close/reopen the store yourself.
- `pg_url` / `sqlite_url` — one engine only.

Isolation: Postgres tests share one database (`orderdesk_test_<random>`, created by a sync
session fixture and dropped at the end) and each test gets its own empty *schema*, selected
through the URL (`?search_path=t_<random>`; asyncpg passes unknown query parameters on as server
settings). That costs a few milliseconds, unlike a database per test.

trio-asyncio: pytest-trio copies the contextvars a fixture sets into the test body (checked:
`trio_asyncio.current_loop.get()` in the test is the fixture's loop, and bare
`aio_as_trio(fn)()` works there and in tasks the test starts). So the pattern to copy is the
`aio_loop` / `store` fixtures below: open the loop in the fixture, open the store inside it, as
the process root does. The Postgres store also captures its loop at open (and opens its own
when none is open), so it keeps working from any task of the run.

Postgres unreachable: the Postgres params skip with the reason, or fail when `CI=true`.
Override the server with `ORDERDESK_TEST_PG` (default postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
import trio
import trio_asyncio

from store import Store, open_store

_DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/test"


def _server_url() -> str:
    return os.environ.get("ORDERDESK_TEST_PG", _DEFAULT_SERVER)


def _with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


def _admin(url: str, *statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """URL of a throwaway database for this session (skip, or fail under CI, if unreachable)."""
    server = _server_url()
    name = f"orderdesk_test_{secrets.token_hex(4)}"
    try:
        _admin(server, f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        reason = f"Postgres at {server} unreachable ({exc!r}); set ORDERDESK_TEST_PG"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield _with_database(server, name)
    finally:
        _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url_factory(pg_database: str) -> Callable[[], str]:
    """Each call returns the URL of a new, empty schema in the session database."""

    def make() -> str:
        schema = f"t_{secrets.token_hex(6)}"
        _admin(pg_database, f"CREATE SCHEMA {schema}")
        return f"{pg_database}?search_path={schema}"

    return make


@pytest.fixture
def pg_url(pg_url_factory: Callable[[], str]) -> str:
    """A Postgres URL whose tables start empty (own schema)."""
    return pg_url_factory()


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    """A SQLite URL to a fresh file under tmp_path (absolute path: four slashes)."""
    return f"sqlite:///{tmp_path}/orderdesk.db"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh database URL for each engine."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return request.getfixturevalue("sqlite_url")


@pytest.fixture
async def aio_loop() -> AsyncIterator[Any]:
    """A trio-asyncio loop, visible in the test body (what the process root opens)."""
    async with trio_asyncio.open_loop() as loop:
        yield loop


@pytest.fixture
async def store(aio_loop: Any, store_url: str) -> AsyncIterator[Store]:
    """An open, migrated, empty store on each engine, inside the trio-asyncio loop."""
    async with open_store(store_url) as opened:
        yield opened


@asynccontextmanager
async def locked_tables(
    url: str, *tables: str, mode: str = "ACCESS EXCLUSIVE"
) -> AsyncIterator[None]:
    """A slow store on purpose: another connection holds `tables` in `mode` until the block
    exits: ACCESS EXCLUSIVE, every read and write of them waits; EXCLUSIVE, writes wait while
    reads go on seeing the last committed rows (a store that lags). Needs the trio-asyncio
    loop."""
    conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(url)
    try:
        await trio_asyncio.aio_as_trio(conn.execute)(
            f"BEGIN; LOCK TABLE {', '.join(tables)} IN {mode} MODE")
        yield
    finally:
        with trio.CancelScope(shield=True):  # closing aborts the transaction: the lock is gone
            await trio_asyncio.aio_as_trio(conn.close)()
