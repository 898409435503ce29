"""A throwaway Postgres database for a bench: created on a server, dropped at the end."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg


def _admin(server: str, statement: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(server, timeout=5)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@contextmanager
def throwaway_database(server: str, prefix: str) -> Iterator[str]:
    """The URL of a new database `<prefix>_<random>` on `server` (a postgresql:// URL of any
    database there), dropped on exit. Call it outside Trio: it runs its own asyncio loop."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    _admin(server, f'CREATE DATABASE "{name}"')
    try:
        yield f"{server.rpartition('/')[0]}/{name}"
    finally:
        _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
