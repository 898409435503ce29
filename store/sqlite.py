"""SQLite engine: the embedded default, so `orderdesk serve` works on a fresh machine.

Every method is one job on the worker thread (one transaction where it writes). WAL mode with
synchronous=FULL: a committed seq survives power loss, so a seq a client saw is never reused.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import trio

from . import _migrations
from ._sqlite_worker import SqliteWorker
from ._util import background
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
_FINAL_IN = "(" + ", ".join("?" * len(_FINAL)) + ")"


def _dumps(value: Json | None) -> str | None:
    return None if value is None else json.dumps(value)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _tx(conn: sqlite3.Connection, fn: Callable[[], T]) -> T:
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


def _migrate(conn: sqlite3.Connection) -> list[int]:
    def apply() -> list[int]:
        conn.execute(_migrations.CREATE_TABLE)
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        applied = []
        for migration in _migrations.load("sqlite"):
            if migration.version in done:
                continue
            for statement in _split(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
            applied.append(migration.version)
        return applied

    return _tx(conn, apply)


def _split(script: str) -> list[str]:
    """Statements of a migration (executescript would commit our transaction first)."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _connect(path: str) -> Callable[[], sqlite3.Connection]:
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        if path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    return connect


def _batch(row: sqlite3.Row) -> BatchRecord:
    return BatchRecord(
        batch_id=row["batch_id"],
        account=row["account"],
        idempotency_key=row["idempotency_key"],
        request_hash=row["request_hash"],
        request=_loads(row["request"]),
        status=row["status"],
        result=_loads(row["result"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _leg(row: sqlite3.Row) -> LegRecord:
    return LegRecord(
        batch_id=row["batch_id"],
        index=row["idx"],
        tag=row["tag"],
        status=row["status"],
        order_id=row["order_id"],
        request=_loads(row["request"]),
        detail=_loads(row["detail"]),
        kind=row["kind"],
    )


def _with_legs(conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[BatchWithLegs]:
    out = []
    for row in rows:
        legs = conn.execute(
            "SELECT * FROM batch_legs WHERE batch_id = ? ORDER BY idx", (row["batch_id"],)
        ).fetchall()
        out.append((_batch(row), [_leg(leg) for leg in legs]))
    return out


def _leg_row(leg: LegRecord, now: float) -> tuple[Any, ...]:
    return (
        leg.batch_id,
        leg.index,
        leg.kind,
        leg.tag,
        leg.status,
        leg.order_id,
        _dumps(leg.request),
        _dumps(leg.detail),
        now,
    )


_INSERT_LEG = (
    "INSERT INTO batch_legs (batch_id, idx, kind, tag, status, order_id, request, detail,"
    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class SqliteStore:
    """The `Store` on SQLite. Build it with `open_sqlite` (or `store.open_store`)."""

    engine = "sqlite"

    def __init__(self, worker: SqliteWorker) -> None:
        self._worker = worker
        self._committer = GroupCommitter(self._write_round)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._worker.run(fn)

    # ------------------------------------------------------------------------ order events

    async def append_events(self, account: str, orders: Sequence[Json]) -> list[int]:
        """Commit `orders` as the next events of `account` (group commit); returns their seqs."""
        for payload in orders:
            order_fields(payload)
        if not orders:
            return []
        return await self._committer.append(account, list(orders))

    async def _write_round(
        self, requests: list[tuple[str, Sequence[Json]]], known: dict[str, int]
    ) -> list[list[int]]:
        def write(conn: sqlite3.Connection) -> list[list[int]]:
            def body() -> list[list[int]]:
                for account in {a for a, _ in requests} - known.keys():
                    known[account] = conn.execute(
                        "SELECT coalesce(max(seq), 0) FROM order_events WHERE account = ?",
                        (account,),
                    ).fetchone()[0]
                per_request, rows = assign_seqs(requests, known)
                now = time.time()
                events = []
                latest: dict[tuple[str, str], tuple[Any, ...]] = {}
                for account, seq, payload in rows:
                    order_id, status, tag = order_fields(payload)
                    text = json.dumps(payload)
                    events.append((account, seq, order_id, text, now))
                    latest[(account, order_id)] = (account, order_id, text, status, tag, seq, now)
                conn.executemany(
                    "INSERT INTO order_events (account, seq, order_id, payload, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    events,
                )
                conn.executemany(
                    "INSERT INTO orders (account, order_id, payload, status, tag, seq, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (account, order_id) DO UPDATE SET payload = excluded.payload,"
                    " status = excluded.status, tag = excluded.tag, seq = excluded.seq,"
                    " updated_at = excluded.updated_at",
                    list(latest.values()),
                )
                return per_request

            return _tx(conn, body)

        return await self._run(write)

    async def last_seq(self, account: str) -> int:
        """Highest committed seq of `account`, 0 if it has none."""
        return await self._run(
            lambda c: c.execute(
                "SELECT coalesce(max(seq), 0) FROM order_events WHERE account = ?", (account,)
            ).fetchone()[0]
        )

    async def read_events(
        self, account: str, after_seq: int, limit: int = 1000
    ) -> list[OrderEvent]:
        """Events of `account` with seq > `after_seq`, oldest first (for replay)."""

        def q(conn: sqlite3.Connection) -> list[OrderEvent]:
            rows = conn.execute(
                "SELECT seq, order_id, payload FROM order_events"
                " WHERE account = ? AND seq > ? ORDER BY seq LIMIT ?",
                (account, after_seq, limit),
            )
            return [OrderEvent(account, r[0], r[1], json.loads(r[2])) for r in rows]

        return await self._run(q)

    async def load_orders(self, account: str) -> list[Json]:
        """Latest payload of every order of `account`, in the order they were last updated."""
        return await self._run(
            lambda c: [
                json.loads(r[0])
                for r in c.execute(
                    "SELECT payload FROM orders WHERE account = ? ORDER BY seq", (account,)
                )
            ]
        )

    # ------------------------------------------------------------------------------ batches

    async def create_batch(self, batch: BatchRecord, legs: Sequence[LegRecord]) -> None:
        """Write the batch and its legs; `IdempotencyConflict` if its key is already taken."""

        def q(conn: sqlite3.Connection) -> None:
            def body() -> None:
                cur = conn.execute(
                    "INSERT INTO batches (batch_id, account, idempotency_key, request_hash,"
                    " request, status, result, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (account, idempotency_key) DO NOTHING",
                    (
                        batch.batch_id,
                        batch.account,
                        batch.idempotency_key,
                        batch.request_hash,
                        _dumps(batch.request),
                        batch.status,
                        _dumps(batch.result),
                        batch.created_at,
                        batch.updated_at,
                    ),
                )
                if cur.rowcount == 0:
                    row = conn.execute(
                        "SELECT * FROM batches WHERE account = ? AND idempotency_key = ?",
                        (batch.account, batch.idempotency_key),
                    ).fetchone()
                    [(existing, existing_legs)] = _with_legs(conn, [row])
                    raise IdempotencyConflict(existing, existing_legs)
                conn.executemany(_INSERT_LEG, [_leg_row(leg, batch.created_at) for leg in legs])

            _tx(conn, body)

        await self._run(q)

    async def update_batch(self, batch_id: str, *, status: str, result: Json | None = None) -> None:
        """Set the batch status (and result, when given)."""

        def q(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE batches SET status = ?, result = coalesce(?, result), updated_at = ?"
                " WHERE batch_id = ?",
                (status, _dumps(result), time.time(), batch_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no batch {batch_id}")

        await self._run(q)

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

        def q(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE batch_legs SET status = ?, order_id = coalesce(?, order_id),"
                " detail = coalesce(?, detail), updated_at = ? WHERE batch_id = ? AND idx = ?",
                (status, order_id, _dumps(detail), time.time(), batch_id, index),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no leg {index} in batch {batch_id}")

        await self._run(q)

    async def add_leg(self, leg: LegRecord) -> None:
        """Add a leg to an existing batch (a reverse or retry order, with its own index/tag)."""

        def q(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(_INSERT_LEG, _leg_row(leg, time.time()))
            except sqlite3.IntegrityError as exc:
                if "FOREIGN KEY" in str(exc):
                    raise NotFound(f"no batch {leg.batch_id}") from exc
                raise

        await self._run(q)

    async def get_batch(self, batch_id: str) -> BatchWithLegs | None:
        """The batch and its legs (by index), or None."""

        def q(conn: sqlite3.Connection) -> BatchWithLegs | None:
            rows = conn.execute("SELECT * FROM batches WHERE batch_id = ?", (batch_id,)).fetchall()
            found = _with_legs(conn, rows)
            return found[0] if found else None

        return await self._run(q)

    async def find_batch(self, account: str, idempotency_key: str) -> BatchWithLegs | None:
        """The batch that holds this idempotency key, or None."""

        def q(conn: sqlite3.Connection) -> BatchWithLegs | None:
            rows = conn.execute(
                "SELECT * FROM batches WHERE account = ? AND idempotency_key = ?",
                (account, idempotency_key),
            ).fetchall()
            found = _with_legs(conn, rows)
            return found[0] if found else None

        return await self._run(q)

    async def unfinished_batches(self) -> list[BatchWithLegs]:
        """Batches not in a final status, oldest first: what recovery must reconcile."""
        return await self._run(
            lambda c: _with_legs(
                c,
                c.execute(
                    f"SELECT * FROM batches WHERE status NOT IN {_FINAL_IN} ORDER BY created_at",
                    _FINAL,
                ).fetchall(),
            )
        )

    async def purge_idempotency_keys(self, older_than: float) -> int:
        """Free the keys of finished batches created before `older_than`; returns how many."""
        return await self._run(
            lambda c: (
                c.execute(
                    "UPDATE batches SET idempotency_key = NULL WHERE idempotency_key IS NOT NULL"
                    f" AND created_at < ? AND status IN {_FINAL_IN}",
                    (older_than, *_FINAL),
                ).rowcount
            )
        )

    # ----------------------------------------------------------------------------- webhooks

    async def enqueue_webhooks(self, deliveries: Sequence[WebhookDelivery]) -> int:
        """Add deliveries to the outbox, skipping (event_id, url) pairs already there."""

        def q(conn: sqlite3.Connection) -> int:
            now = time.time()

            def body() -> int:
                added = 0
                for d in deliveries:
                    added += conn.execute(
                        "INSERT INTO webhook_outbox (event_id, account, url, event_type, payload,"
                        " next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (event_id, url) DO NOTHING",
                        (
                            d.event_id,
                            d.account,
                            d.url,
                            d.event_type,
                            json.dumps(d.payload),
                            now,
                            now,
                            now,
                        ),
                    ).rowcount
                return added

            return _tx(conn, body)

        return await self._run(q) if deliveries else 0

    async def claim_webhooks(self, limit: int, now: float, lease_s: float) -> list[WebhookDelivery]:
        """Lease up to `limit` due deliveries until now+lease_s; claimers never overlap."""

        def q(conn: sqlite3.Connection) -> list[WebhookDelivery]:
            def body() -> list[WebhookDelivery]:
                rows = conn.execute(
                    "UPDATE webhook_outbox SET leased_until = ? + ?, attempts = attempts + 1,"
                    " updated_at = ? WHERE id IN ("
                    "  SELECT id FROM webhook_outbox WHERE status = 'pending'"
                    "  AND next_attempt_at <= ? AND (leased_until IS NULL OR leased_until <= ?)"
                    "  ORDER BY next_attempt_at, id LIMIT ?)"
                    " RETURNING id, event_id, account, url, event_type, payload, attempts",
                    (now, lease_s, now, now, now, limit),
                ).fetchall()
                return [
                    WebhookDelivery(
                        r[1], r[2], r[3], r[4], json.loads(r[5]), id=r[0], attempts=r[6]
                    )
                    for r in rows
                ]

            return sorted(_tx(conn, body), key=lambda d: d.id or 0)

        return await self._run(q)

    async def _finish_webhook(self, sql: str, params: tuple[Any, ...]) -> None:
        def q(conn: sqlite3.Connection) -> None:
            if conn.execute(sql, params).rowcount == 0:
                raise NotFound(f"no webhook delivery {params[-1]}")

        await self._run(q)

    async def ack_webhook(self, id: int) -> None:
        """Mark a delivery as delivered."""
        await self._finish_webhook(
            "UPDATE webhook_outbox SET status = 'delivered', leased_until = NULL,"
            " updated_at = ? WHERE id = ?",
            (time.time(), id),
        )

    async def retry_webhook(self, id: int, next_attempt_at: float, error: str) -> None:
        """Release a delivery to be tried again at `next_attempt_at`."""
        await self._finish_webhook(
            "UPDATE webhook_outbox SET status = 'pending', leased_until = NULL,"
            " next_attempt_at = ?, last_error = ?, updated_at = ? WHERE id = ?",
            (next_attempt_at, error, time.time(), id),
        )

    async def fail_webhook(self, id: int, error: str) -> None:
        """Give up on a delivery for good."""
        await self._finish_webhook(
            "UPDATE webhook_outbox SET status = 'failed', leased_until = NULL,"
            " last_error = ?, updated_at = ? WHERE id = ?",
            (error, time.time(), id),
        )

    # -------------------------------------------------------------------------------- audit

    async def record_audit(self, entry: AuditEntry) -> None:
        """Append one audit entry."""
        await self._run(
            lambda c: c.execute(
                "INSERT INTO audit_log (account, actor_name, action, order_id, detail, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    entry.account,
                    entry.actor_name,
                    entry.action,
                    entry.order_id,
                    json.dumps(entry.detail),
                    entry.at,
                ),
            )
        )

    async def list_audit(self, account: str | None, limit: int = 100) -> list[AuditEntry]:
        """Newest first; all accounts when `account` is None."""

        def q(conn: sqlite3.Connection) -> list[AuditEntry]:
            rows = conn.execute(
                "SELECT account, actor_name, action, order_id, detail, at FROM audit_log"
                " WHERE ? IS NULL OR account = ? ORDER BY id DESC LIMIT ?",
                (account, account, limit),
            )
            return [AuditEntry(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]

        return await self._run(q)

    # ------------------------------------------------------------------------------- health

    async def health(self) -> Json:
        """Round-trip `SELECT 1` on the worker; reports instead of raising."""
        timeout = HEALTH_TIMEOUT_S
        started = time.perf_counter()
        error = None
        with trio.move_on_after(timeout) as scope:
            try:
                await self._run(lambda c: c.execute("SELECT 1").fetchone())
            except StoreError as exc:
                error = str(exc)
        if scope.cancelled_caught:
            error = f"no answer within {timeout}s"
        return {
            "engine": self.engine,
            "ok": error is None,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "pending_commits": self._committer.pending(),
            "pending_jobs": self._worker.pending(),
            "error": error,
        }

    async def _sleep_in_db(self, seconds: float) -> None:
        """Test hook: keep the worker busy in one long-running statement (interruptible)."""
        deadline = time.monotonic() + seconds

        def q(conn: sqlite3.Connection) -> None:
            conn.create_function("od_before", 0, lambda: time.monotonic() < deadline)
            conn.execute(
                "WITH RECURSIVE spin(x) AS (SELECT 1 UNION ALL"
                " SELECT x + 1 FROM spin WHERE od_before()) SELECT count(*) FROM spin"
            ).fetchone()

        await self._run(q)


def sqlite_path(url: str) -> str:
    """`sqlite:///rel/path` (under cwd), `sqlite:////abs/path` or `sqlite:///:memory:`."""
    if not url.startswith("sqlite:///"):
        raise StoreError(f"not a sqlite URL: {url!r}")
    path = url[len("sqlite:///") :]
    if not path or path == ":memory:":
        return ":memory:"
    return path


@asynccontextmanager
async def open_sqlite(url: str) -> AsyncIterator[SqliteStore]:
    """Start the worker thread, apply migrations, run the committer; join everything on exit."""
    path = sqlite_path(url)
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    worker = SqliteWorker(_connect(path))
    try:
        try:
            await worker.run(_migrate)
        except StoreError as exc:
            raise StoreUnavailable(f"cannot open sqlite database {path!r}: {exc}") from exc
        store = SqliteStore(worker)
        async with background(store._committer.run):
            yield store
    finally:
        await worker.aclose()


async def migrate_sqlite(url: str) -> list[int]:
    """Apply pending migrations (for `orderdesk migrate`); returns the versions applied."""
    path = sqlite_path(url)
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    worker = SqliteWorker(_connect(path))
    try:
        return await worker.run(_migrate)
    finally:
        await worker.aclose()
