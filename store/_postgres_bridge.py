"""Reaching asyncpg from Trio: the trio-asyncio loop, the pool's codecs, and `_call`.

Each public method of the Postgres store crosses the bridge exactly once (one asyncio coroutine
does all the queries of that call, in one transaction where it writes), because a crossing costs
~40-50 us. The loop is captured at open, so any Trio task of the run can call the store, whichever
task opened the loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from contextvars import ContextVar
from typing import Any, TypeVar

import asyncpg
import trio_asyncio

from ._rows import Row
from ._shared_queries import SharedQueries
from ._sql import Statement
from ._util import unwrapped_groups
from .base import Json, NotFound, StoreError, StoreUnavailable

T = TypeVar("T")

#: [cluster] fencing: a check run on the connection, in the call's own transaction, before the
#: call's statements (`_postgres_fencing` sets it around a write; unset, `_call` is unchanged).
Fence = Callable[[asyncpg.Connection], Awaitable[None]]
CALL_FENCE: ContextVar[Fence | None] = ContextVar("orderdesk_call_fence", default=None)


async def init_connection(conn: asyncpg.Connection) -> None:
    """Pool `init`: jsonb columns come and go as Python values."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def current_or_own_loop(stack: AsyncExitStack) -> asyncio.AbstractEventLoop:
    """The trio-asyncio loop of the caller's context, else one opened on `stack`."""
    loop = trio_asyncio.current_loop.get()
    if loop is None:  # the process root normally opens it; a script or test may not have
        await stack.enter_async_context(unwrapped_groups())
        loop = await stack.enter_async_context(trio_asyncio.open_loop())
    return loop


class PostgresPart(SharedQueries):
    """Base of the parts of `PostgresStore`: holds the pool and the loop; `_call` crosses.
    Its primitives for `SharedQueries` cross once per statement."""

    #: [cluster]: the epoch this node holds per account it owns; None: no fencing at all.
    _fences: dict[str, int] | None = None

    def __init__(self, pool: asyncpg.Pool, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._loop = loop

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run the asyncio coroutine function `fn(conn, *args)` on a pooled connection."""

        fence = CALL_FENCE.get()

        async def job() -> T:
            async with self._pool.acquire() as conn:
                if fence is None:
                    return await fn(conn, *args)
                async with conn.transaction():  # the check's row lock lasts until the commit
                    await fence(conn)
                    return await fn(conn, *args)

        try:
            return await trio_asyncio.aio_as_trio(job, loop=self._loop)()
        except StoreError:
            raise
        except asyncio.CancelledError as exc:  # asyncio side torn down, Trio not cancelled
            raise StoreUnavailable("postgres call cancelled by the asyncio loop") from exc
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"postgres: {exc}") from exc
        except (OSError, TimeoutError, RuntimeError) as exc:
            raise StoreUnavailable(f"postgres unavailable: {exc!r}") from exc

    @staticmethod
    def _encode(value: Json | None) -> Any:
        return value  # the pool's jsonb codec encodes

    @staticmethod
    def _decode(value: Any) -> Any:
        return value  # the pool's jsonb codec decoded it

    async def _execute(self, statement: Statement, *args: Any) -> None:
        async def q(conn: asyncpg.Connection) -> None:
            await conn.execute(statement.postgres, *args)

        await self._call(q)

    async def _fetch(self, statement: Statement, *args: Any) -> list[Row]:
        async def q(conn: asyncpg.Connection) -> list[Row]:
            return list(await conn.fetch(statement.postgres, *args))

        return await self._call(q)

    async def _fetch_value(self, statement: Statement, *args: Any) -> Any:
        async def q(conn: asyncpg.Connection) -> Any:
            return await conn.fetchval(statement.postgres, *args)

        return await self._call(q)

    async def _update_one(self, missing: str, statement: Statement, *args: Any) -> None:
        async def q(conn: asyncpg.Connection) -> None:
            if await conn.execute(statement.postgres, *args) == "UPDATE 0":
                raise NotFound(missing)

        await self._call(q)
