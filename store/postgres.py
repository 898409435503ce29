"""Postgres engine: an asyncpg pool reached from Trio through trio-asyncio.

Each public method crosses the bridge exactly once (one asyncio coroutine does all the queries of
that call, in one transaction where it writes), because a crossing costs ~40-50 us. The loop is
captured at open, so any Trio task of the run can call the store, whichever task opened the loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import trio
import trio_asyncio

from . import _migrations
from ._util import background, unwrapped_groups
from .base import (
    FINAL_BATCH_STATUSES,
    HEALTH_TIMEOUT_S,
    AuditEntry,
    BatchRecord,
    BatchWithLegs,
    IdempotencyConflict,
    Json,
    LegRecord,
    NotFound,
    OrderEvent,
    StoreError,
    StoreUnavailable,
    WebhookDelivery,
    order_fields,
)
from .group_commit import GroupCommitter, assign_seqs

T = TypeVar("T")
_FINAL = sorted(FINAL_BATCH_STATUSES)
_LOCK_ID = 0x6F72_6465_7264  # advisory lock serialising concurrent migrators


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


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
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                time.time(),
            )
            applied.append(migration.version)
    return applied


def _batch(row: asyncpg.Record) -> BatchRecord:
    return BatchRecord(
        batch_id=row["batch_id"],
        account=row["account"],
        idempotency_key=row["idempotency_key"],
        request_hash=row["request_hash"],
        request=row["request"],
        status=row["status"],
        result=row["result"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _leg(row: asyncpg.Record) -> LegRecord:
    return LegRecord(
        batch_id=row["batch_id"],
        index=row["idx"],
        tag=row["tag"],
        status=row["status"],
        order_id=row["order_id"],
        request=row["request"],
        detail=row["detail"],
        kind=row["kind"],
    )


def _delivery(row: asyncpg.Record) -> WebhookDelivery:
    return WebhookDelivery(
        event_id=row["event_id"],
        account=row["account"],
        url=row["url"],
        event_type=row["event_type"],
        payload=row["payload"],
        id=row["id"],
        attempts=row["attempts"],
    )


async def _batches_with_legs(
    conn: asyncpg.Connection, rows: list[asyncpg.Record]
) -> list[BatchWithLegs]:
    if not rows:
        return []
    legs: dict[str, list[LegRecord]] = {r["batch_id"]: [] for r in rows}
    for leg in await conn.fetch(
        "SELECT * FROM batch_legs WHERE batch_id = ANY($1::text[]) ORDER BY batch_id, idx",
        list(legs),
    ):
        legs[leg["batch_id"]].append(_leg(leg))
    return [(_batch(r), legs[r["batch_id"]]) for r in rows]


class PostgresStore:
    """The `Store` on Postgres. Build it with `open_postgres` (or `store.open_store`)."""

    engine = "postgres"

    def __init__(self, pool: asyncpg.Pool, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._loop = loop
        self._committer = GroupCommitter(self._write_round)

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run the asyncio coroutine function `fn(conn, *args)` on a pooled connection."""

        async def job() -> T:
            async with self._pool.acquire() as conn:
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

    # ------------------------------------------------------------------------ order events

    async def append_events(self, account: str, orders: Sequence[Json]) -> list[int]:
        """Commit `orders` as the next events of `account` (group commit); returns their seqs."""
        for payload in orders:
            order_fields(payload)  # reject a bad payload before it can fail a whole round
        if not orders:
            return []
        return await self._committer.append(account, list(orders))

    async def _write_round(
        self, requests: list[tuple[str, Sequence[Json]]], known: dict[str, int]
    ) -> list[list[int]]:
        return await self._call(self._write_round_aio, requests, known)

    @staticmethod
    async def _write_round_aio(
        conn: asyncpg.Connection, requests: list[tuple[str, Sequence[Json]]], known: dict[str, int]
    ) -> list[list[int]]:
        async with conn.transaction():
            missing = sorted({a for a, _ in requests} - known.keys())
            if missing:
                known.update(dict.fromkeys(missing, 0))
                for row in await conn.fetch(
                    "SELECT account, max(seq) AS seq FROM order_events"
                    " WHERE account = ANY($1::text[]) GROUP BY account",
                    missing,
                ):
                    known[row["account"]] = row["seq"]
            per_request, rows = assign_seqs(requests, known)
            now = time.time()
            events = []
            latest: dict[tuple[str, str], tuple[Any, ...]] = {}
            for account, seq, payload in rows:
                order_id, status, tag = order_fields(payload)
                events.append((account, seq, order_id, payload))
                latest[(account, order_id)] = (account, order_id, payload, status, tag, seq)
            # one statement per table whatever the round size (unnest, not executemany)
            await conn.execute(
                "INSERT INTO order_events (account, seq, order_id, payload, created_at)"
                " SELECT a, s, o, p, $5 FROM unnest($1::text[], $2::bigint[], $3::text[],"
                " $4::jsonb[]) AS x(a, s, o, p)",
                *zip(*events, strict=True),
                now,
            )
            await conn.execute(
                "INSERT INTO orders (account, order_id, payload, status, tag, seq, updated_at)"
                " SELECT a, o, p, st, t, s, $7 FROM unnest($1::text[], $2::text[], $3::jsonb[],"
                " $4::text[], $5::text[], $6::bigint[]) AS x(a, o, p, st, t, s)"
                " ON CONFLICT (account, order_id) DO UPDATE SET payload = EXCLUDED.payload,"
                " status = EXCLUDED.status, tag = EXCLUDED.tag, seq = EXCLUDED.seq,"
                " updated_at = EXCLUDED.updated_at",
                *zip(*latest.values(), strict=True),
                now,
            )
        return per_request

    async def last_seq(self, account: str) -> int:
        """Highest committed seq of `account`, 0 if it has none."""

        async def q(conn: asyncpg.Connection) -> int:
            value = await conn.fetchval(
                "SELECT max(seq) FROM order_events WHERE account = $1", account
            )
            return int(value or 0)

        return await self._call(q)

    async def read_events(
        self, account: str, after_seq: int, limit: int = 1000
    ) -> list[OrderEvent]:
        """Events of `account` with seq > `after_seq`, oldest first (for replay)."""

        async def q(conn: asyncpg.Connection) -> list[OrderEvent]:
            rows = await conn.fetch(
                "SELECT seq, order_id, payload FROM order_events"
                " WHERE account = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                account,
                after_seq,
                limit,
            )
            return [OrderEvent(account, r["seq"], r["order_id"], r["payload"]) for r in rows]

        return await self._call(q)

    async def load_orders(self, account: str) -> list[Json]:
        """Latest payload of every order of `account`, in the order they were last updated."""

        async def q(conn: asyncpg.Connection) -> list[Json]:
            rows = await conn.fetch(
                "SELECT payload FROM orders WHERE account = $1 ORDER BY seq", account
            )
            return [r["payload"] for r in rows]

        return await self._call(q)

    # ------------------------------------------------------------------------------ batches

    async def create_batch(self, batch: BatchRecord, legs: Sequence[LegRecord]) -> None:
        """Write the batch and its legs; `IdempotencyConflict` if its key is already taken."""

        async def q(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                inserted = await conn.fetchval(
                    "INSERT INTO batches (batch_id, account, idempotency_key, request_hash,"
                    " request, status, result, created_at, updated_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    " ON CONFLICT (account, idempotency_key) DO NOTHING RETURNING batch_id",
                    batch.batch_id,
                    batch.account,
                    batch.idempotency_key,
                    batch.request_hash,
                    batch.request,
                    batch.status,
                    batch.result,
                    batch.created_at,
                    batch.updated_at,
                )
                if inserted is None:
                    row = await conn.fetchrow(
                        "SELECT * FROM batches WHERE account = $1 AND idempotency_key = $2",
                        batch.account,
                        batch.idempotency_key,
                    )
                    if row is None:  # purged between the two statements: let the caller retry
                        raise StoreError("idempotency conflict with a batch that vanished")
                    [(existing, existing_legs)] = await _batches_with_legs(conn, [row])
                    raise IdempotencyConflict(existing, existing_legs)
                await conn.executemany(
                    "INSERT INTO batch_legs (batch_id, idx, kind, tag, status, order_id,"
                    " request, detail, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    [_leg_row(leg, batch.created_at) for leg in legs],
                )

        await self._call(q)

    async def update_batch(self, batch_id: str, *, status: str, result: Json | None = None) -> None:
        """Set the batch status (and result, when given)."""

        async def q(conn: asyncpg.Connection) -> None:
            done = await conn.execute(
                "UPDATE batches SET status = $2, result = coalesce($3, result), updated_at = $4"
                " WHERE batch_id = $1",
                batch_id,
                status,
                result,
                time.time(),
            )
            if done == "UPDATE 0":
                raise NotFound(f"no batch {batch_id}")

        await self._call(q)

    async def update_leg(
        self,
        batch_id: str,
        index: int,
        *,
        status: str,
        order_id: str | None = None,
        detail: Json | None = None,
    ) -> None:
        """Set a leg's status; order_id/detail are kept when not given (detail is replaced)."""

        async def q(conn: asyncpg.Connection) -> None:
            done = await conn.execute(
                "UPDATE batch_legs SET status = $3, order_id = coalesce($4, order_id),"
                " detail = coalesce($5, detail), updated_at = $6"
                " WHERE batch_id = $1 AND idx = $2",
                batch_id,
                index,
                status,
                order_id,
                detail,
                time.time(),
            )
            if done == "UPDATE 0":
                raise NotFound(f"no leg {index} in batch {batch_id}")

        await self._call(q)

    async def add_leg(self, leg: LegRecord) -> None:
        """Add a leg to an existing batch (a reverse or retry order, with its own index/tag)."""

        async def q(conn: asyncpg.Connection) -> None:
            try:
                await conn.execute(
                    "INSERT INTO batch_legs (batch_id, idx, kind, tag, status, order_id,"
                    " request, detail, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    *_leg_row(leg, time.time()),
                )
            except asyncpg.ForeignKeyViolationError as exc:
                raise NotFound(f"no batch {leg.batch_id}") from exc

        await self._call(q)

    async def get_batch(self, batch_id: str) -> BatchWithLegs | None:
        """The batch and its legs (by index), or None."""

        async def q(conn: asyncpg.Connection) -> BatchWithLegs | None:
            row = await conn.fetchrow("SELECT * FROM batches WHERE batch_id = $1", batch_id)
            found = await _batches_with_legs(conn, [row] if row else [])
            return found[0] if found else None

        return await self._call(q)

    async def find_batch(self, account: str, idempotency_key: str) -> BatchWithLegs | None:
        """The batch that holds this idempotency key, or None."""

        async def q(conn: asyncpg.Connection) -> BatchWithLegs | None:
            row = await conn.fetchrow(
                "SELECT * FROM batches WHERE account = $1 AND idempotency_key = $2",
                account,
                idempotency_key,
            )
            found = await _batches_with_legs(conn, [row] if row else [])
            return found[0] if found else None

        return await self._call(q)

    async def unfinished_batches(self) -> list[BatchWithLegs]:
        """Batches not in a final status, oldest first: what recovery must reconcile."""

        async def q(conn: asyncpg.Connection) -> list[BatchWithLegs]:
            rows = await conn.fetch(
                "SELECT * FROM batches WHERE status <> ALL($1::text[]) ORDER BY created_at",
                _FINAL,
            )
            return await _batches_with_legs(conn, list(rows))

        return await self._call(q)

    async def purge_idempotency_keys(self, older_than: float) -> int:
        """Free the keys of finished batches created before `older_than`; returns how many."""

        async def q(conn: asyncpg.Connection) -> int:
            done = await conn.execute(
                "UPDATE batches SET idempotency_key = NULL WHERE idempotency_key IS NOT NULL"
                " AND created_at < $1 AND status = ANY($2::text[])",
                older_than,
                _FINAL,
            )
            return int(done.split()[-1])

        return await self._call(q)

    # ----------------------------------------------------------------------------- webhooks

    async def enqueue_webhooks(self, deliveries: Sequence[WebhookDelivery]) -> int:
        """Add deliveries to the outbox, skipping (event_id, url) pairs already there."""

        async def q(conn: asyncpg.Connection) -> int:
            now = time.time()
            rows = await conn.fetch(
                "INSERT INTO webhook_outbox (event_id, account, url, event_type, payload,"
                " next_attempt_at, created_at, updated_at)"
                " SELECT e, a, u, t, p, $6, $6, $6"
                " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[])"
                " AS x(e, a, u, t, p)"
                " ON CONFLICT (event_id, url) DO NOTHING RETURNING id",
                [d.event_id for d in deliveries],
                [d.account for d in deliveries],
                [d.url for d in deliveries],
                [d.event_type for d in deliveries],
                [d.payload for d in deliveries],
                now,
            )
            return len(rows)

        return await self._call(q) if deliveries else 0

    async def claim_webhooks(self, limit: int, now: float, lease_s: float) -> list[WebhookDelivery]:
        """Lease up to `limit` due deliveries until now+lease_s; claimers never overlap."""

        async def q(conn: asyncpg.Connection) -> list[WebhookDelivery]:
            rows = await conn.fetch(
                "UPDATE webhook_outbox SET leased_until = $2 + $3, attempts = attempts + 1,"
                " updated_at = $2 WHERE id IN ("
                "  SELECT id FROM webhook_outbox WHERE status = 'pending'"
                "  AND next_attempt_at <= $2 AND (leased_until IS NULL OR leased_until <= $2)"
                "  ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)"
                " RETURNING *",
                limit,
                now,
                lease_s,
            )
            return sorted((_delivery(r) for r in rows), key=lambda d: d.id or 0)

        return await self._call(q)

    async def _finish_webhook(self, sql: str, *args: Any) -> None:
        async def q(conn: asyncpg.Connection) -> None:
            if await conn.execute(sql, *args, time.time()) == "UPDATE 0":
                raise NotFound(f"no webhook delivery {args[0]}")

        await self._call(q)

    async def ack_webhook(self, id: int) -> None:
        """Mark a delivery as delivered."""
        await self._finish_webhook(
            "UPDATE webhook_outbox SET status = 'delivered', leased_until = NULL,"
            " updated_at = $2 WHERE id = $1",
            id,
        )

    async def retry_webhook(self, id: int, next_attempt_at: float, error: str) -> None:
        """Release a delivery to be tried again at `next_attempt_at`."""
        await self._finish_webhook(
            "UPDATE webhook_outbox SET status = 'pending', leased_until = NULL,"
            " next_attempt_at = $2, last_error = $3, updated_at = $4 WHERE id = $1",
            id,
            next_attempt_at,
            error,
        )

    async def fail_webhook(self, id: int, error: str) -> None:
        """Give up on a delivery for good."""
        await self._finish_webhook(
            "UPDATE webhook_outbox SET status = 'failed', leased_until = NULL,"
            " last_error = $2, updated_at = $3 WHERE id = $1",
            id,
            error,
        )

    # -------------------------------------------------------------------------------- audit

    async def record_audit(self, entry: AuditEntry) -> None:
        """Append one audit entry."""

        async def q(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO audit_log (account, actor_name, action, order_id, detail, at)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                entry.account,
                entry.actor_name,
                entry.action,
                entry.order_id,
                entry.detail,
                entry.at,
            )

        await self._call(q)

    async def list_audit(self, account: str | None, limit: int = 100) -> list[AuditEntry]:
        """Newest first; all accounts when `account` is None."""

        async def q(conn: asyncpg.Connection) -> list[AuditEntry]:
            rows = await conn.fetch(
                "SELECT * FROM audit_log WHERE $1::text IS NULL OR account = $1"
                " ORDER BY id DESC LIMIT $2",
                account,
                limit,
            )
            return [
                AuditEntry(
                    r["account"], r["actor_name"], r["action"], r["order_id"], r["detail"], r["at"]
                )
                for r in rows
            ]

        return await self._call(q)

    # ------------------------------------------------------------------------------- health

    async def health(self) -> Json:
        """Round-trip `SELECT 1`; reports instead of raising, so /health always answers."""
        timeout = HEALTH_TIMEOUT_S
        started = time.perf_counter()
        error = None
        with trio.move_on_after(timeout) as scope:
            try:
                await self._call(_select_one)
            except StoreError as exc:
                error = str(exc)
        if scope.cancelled_caught:
            error = f"no answer within {timeout}s"
        return {
            "engine": self.engine,
            "ok": error is None,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "pending_commits": self._committer.pending(),
            "pool_size": self._pool.get_size(),
            "error": error,
        }

    async def _sleep_in_db(self, seconds: float) -> None:
        """Test hook: hold a pooled connection in a server-side sleep."""

        async def q(conn: asyncpg.Connection) -> None:
            await conn.execute("SELECT pg_sleep($1)", seconds)

        await self._call(q)


async def _select_one(conn: asyncpg.Connection) -> None:
    await conn.fetchval("SELECT 1")


def _leg_row(leg: LegRecord, now: float) -> tuple[Any, ...]:
    return (
        leg.batch_id,
        leg.index,
        leg.kind,
        leg.tag,
        leg.status,
        leg.order_id,
        leg.request,
        leg.detail,
        now,
    )


async def _current_or_own_loop(stack: AsyncExitStack) -> asyncio.AbstractEventLoop:
    loop = trio_asyncio.current_loop.get()
    if loop is None:  # the process root normally opens it; a script or test may not have
        await stack.enter_async_context(unwrapped_groups())
        loop = await stack.enter_async_context(trio_asyncio.open_loop())
    return loop


@asynccontextmanager
async def open_postgres(url: str, *, pool_size: int = 10) -> AsyncIterator[PostgresStore]:
    """Connect a pool, apply migrations, run the committer; close everything on exit."""
    async with AsyncExitStack() as stack:
        loop = await _current_or_own_loop(stack)
        try:
            pool = await trio_asyncio.aio_as_trio(asyncpg.create_pool, loop=loop)(
                url, min_size=1, max_size=pool_size, init=_init_connection
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"cannot connect to postgres: {exc}") from exc
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
        loop = await _current_or_own_loop(stack)

        async def run() -> list[int]:
            conn = await asyncpg.connect(url)
            try:
                return await _migrate(conn)
            finally:
                await conn.close()

        try:
            return await trio_asyncio.aio_as_trio(run, loop=loop)()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"cannot migrate postgres: {exc}") from exc
