"""How a SQLite store call runs: as one job on the worker thread, in one write transaction where
it writes, with JSON columns stored as text."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from ._rows import Row
from ._shared_queries import SharedQueries
from ._sql import Statement
from ._sqlite_worker import SqliteWorker
from .base import Json, NotFound

T = TypeVar("T")


def dumps(value: Json | None) -> str | None:
    return None if value is None else json.dumps(value)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def write_tx(conn: sqlite3.Connection, fn: Callable[[], T]) -> T:
    """Run `fn` in one write transaction (BEGIN IMMEDIATE takes the write lock up front)."""
    conn.execute("BEGIN IMMEDIATE")
    committed = False
    try:
        result = fn()
        conn.execute("COMMIT")
        committed = True
        return result
    finally:
        if not committed and conn.in_transaction:
            conn.execute("ROLLBACK")


class SqlitePart(SharedQueries):
    """Base of the parts of `SqliteStore`: holds the worker, runs jobs on it. Its primitives
    for `SharedQueries` run each statement as one job (autocommit, outside `write_tx`)."""

    def __init__(self, worker: SqliteWorker) -> None:
        self._worker = worker

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._worker.run(fn)

    _encode = staticmethod(dumps)
    _decode = staticmethod(loads)

    async def _execute(self, statement: Statement, *args: Any) -> None:
        def q(conn: sqlite3.Connection) -> None:
            conn.execute(statement.sqlite, args)

        await self._run(q)

    async def _fetch(self, statement: Statement, *args: Any) -> list[Row]:
        return await self._run(lambda c: c.execute(statement.sqlite, args).fetchall())

    async def _fetch_value(self, statement: Statement, *args: Any) -> Any:
        def q(conn: sqlite3.Connection) -> Any:
            row = conn.execute(statement.sqlite, args).fetchone()
            return None if row is None else row[0]

        return await self._run(q)

    async def _update_one(self, missing: str, statement: Statement, *args: Any) -> None:
        def q(conn: sqlite3.Connection) -> None:
            if conn.execute(statement.sqlite, args).rowcount == 0:
                raise NotFound(missing)

        await self._run(q)
