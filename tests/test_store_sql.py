"""The statements both engines share (store/_sql.py): rendered per engine, and every one of them
is valid SQL on a migrated database of each engine (prepared by the real server or library)."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from typing import Any

import asyncpg
import pytest
import trio_asyncio

from store import _sql, migrate
from store._sql import Statement, sql

SHARED = sorted(name for name, value in vars(_sql).items() if isinstance(value, Statement))


def test_numbered_placeholders_render_for_each_engine() -> None:
    statement = sql("SELECT * FROM t WHERE a = $1 OR ($1 IS NULL AND b > $2) LIMIT $3")
    assert statement.postgres == "SELECT * FROM t WHERE a = $1 OR ($1 IS NULL AND b > $2) LIMIT $3"
    assert statement.sqlite == "SELECT * FROM t WHERE a = ?1 OR (?1 IS NULL AND b > ?2) LIMIT ?3"


def test_a_gap_in_the_placeholders_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\$1\.\.\$N without a gap: \[1, 3\]"):
        sql("UPDATE t SET a = $1 WHERE id = $3")


def test_a_reused_placeholder_binds_one_value_on_sqlite() -> None:
    conn = sqlite3.connect(":memory:")
    statement = sql("SELECT $1, $2, $1")
    assert conn.execute(statement.sqlite, ("a", "b")).fetchone() == ("a", "b", "a")


def _arity(statement: Statement) -> int:
    return max((int(n) for n in re.findall(r"\$(\d+)", statement.postgres)), default=0)


async def test_every_shared_statement_is_valid_on_both_engines(
    aio_loop: Any, store_url: str
) -> None:
    statements = [getattr(_sql, name) for name in SHARED]
    assert len(statements) >= 15, SHARED
    await migrate(store_url)
    if store_url.startswith("sqlite:///"):
        with closing(sqlite3.connect(store_url[len("sqlite:///") :])) as lite:
            for s in statements:  # EXPLAIN compiles the statement without running it
                lite.execute("EXPLAIN " + s.sqlite, (None,) * _arity(s))
        return

    async def prepare_all() -> None:
        pg = await asyncpg.connect(store_url)
        try:
            [await pg.prepare(s.postgres) for s in statements]
        finally:
            await pg.close()

    await trio_asyncio.aio_as_trio(prepare_all)()
