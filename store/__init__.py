"""Persistence for orderdesk: order events (the replay source), batches, webhooks, audit,
saved baskets.

`open_store(url)` picks the engine from the URL: `postgresql://...` (asyncpg through
trio-asyncio) or `sqlite:///path` (stdlib sqlite3 on one worker thread). Both behave the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ._lock import StoreInUse, exclusive_store
from .base import (
    FINAL_BATCH_STATUSES,
    AccountState,
    AuditEntry,
    BasketRecord,
    BasketsFull,
    BatchRecord,
    BatchWithLegs,
    FencedOut,
    IdempotencyConflict,
    LegRecord,
    NotFound,
    OrderEvent,
    Pruned,
    Store,
    StoreError,
    StoreOpenFailed,
    StoreUnavailable,
    TokenRotation,
    WebhookDelivery,
)

__all__ = [
    "FINAL_BATCH_STATUSES",
    "AccountState",
    "AuditEntry",
    "BasketRecord",
    "BasketsFull",
    "BatchRecord",
    "BatchWithLegs",
    "FencedOut",
    "IdempotencyConflict",
    "LegRecord",
    "NotFound",
    "OrderEvent",
    "Pruned",
    "Store",
    "StoreError",
    "StoreInUse",
    "StoreOpenFailed",
    "StoreUnavailable",
    "TokenRotation",
    "WebhookDelivery",
    "account_owners",
    "exclusive_store",
    "migrate",
    "open_store",
]

_PG_SCHEMES = ("postgresql://", "postgres://")


def _engine(url: str) -> str:
    if url.startswith(_PG_SCHEMES):
        return "postgres"
    if url.startswith("sqlite:///"):
        return "sqlite"
    raise StoreError(
        f"unsupported database URL {url.split('://')[0]!r}: use postgresql:// or sqlite:///"
    )


@asynccontextmanager
async def open_store(url: str, *, pool_size: int = 10) -> AsyncIterator[Store]:
    """Open the store for `url`, apply pending migrations, close it on exit (`pool_size`:
    Postgres connections; SQLite has one writer thread).

    Postgres needs a trio-asyncio loop; the one open in the caller's context is used (the process
    root opens it), otherwise the store opens its own for its lifetime.
    """
    if _engine(url) == "postgres":
        from .postgres import open_postgres

        async with open_postgres(url, pool_size=pool_size) as pg:
            yield pg
    else:
        from .sqlite import open_sqlite

        async with open_sqlite(url) as lite:
            yield lite


async def account_owners(url: str) -> list[dict[str, object]]:
    """[cluster]: which node owns each account under which epoch (`account_owner`), read on a
    connection of its own; Postgres only (a cluster needs it)."""
    if _engine(url) != "postgres":
        raise StoreError("account owners are kept in Postgres only ([cluster] needs it)")
    from .postgres import read_owners

    return await read_owners(url)


async def migrate(url: str) -> list[int]:
    """Apply pending migrations and return the versions applied (`orderdesk migrate`)."""
    if _engine(url) == "postgres":
        from .postgres import migrate_postgres

        return await migrate_postgres(url)
    from .sqlite import migrate_sqlite

    return await migrate_sqlite(url)
