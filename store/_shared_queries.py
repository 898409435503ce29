"""The `Store` methods that are one statement on either engine, written once.

Each engine's part base (`PostgresPart`, `SqlitePart`) derives from `SharedQueries` and supplies
the primitives: how to run a `Statement` (execute, fetch rows, fetch one value, update one row)
and how its JSON columns travel (asyncpg's jsonb codec takes Python values; SQLite stores text).
Methods whose engines really differ (the group-commit round, the webhook claim and bulk insert,
array parameters, a batch with its legs in one round trip) stay in the engine modules.
"""

from __future__ import annotations

import time
from typing import Any

from . import _sql
from ._rows import Row, audit_from_row, basket_from_row
from ._sql import Statement
from .base import AuditEntry, BasketRecord, BasketsFull, Json, OrderEvent, TokenRotation


class SharedQueries:
    """Base of both engines' parts: the shared methods over the engine's primitives."""

    # ---------------------------------------------------------------- the engine's primitives

    @staticmethod
    def _encode(value: Json | None) -> Any:
        """A JSON value as the engine takes it for a parameter."""
        raise NotImplementedError

    @staticmethod
    def _decode(value: Any) -> Any:
        """A JSON column as the engine returns it, as a Python value."""
        raise NotImplementedError

    async def _execute(self, statement: Statement, *args: Any) -> None:
        """Run `statement`; nothing comes back."""
        raise NotImplementedError

    async def _fetch(self, statement: Statement, *args: Any) -> list[Row]:
        """Run `statement`; its rows, read by column name."""
        raise NotImplementedError

    async def _fetch_value(self, statement: Statement, *args: Any) -> Any:
        """Run `statement`; the first column of its first row, None without a row."""
        raise NotImplementedError

    async def _update_one(self, missing: str, statement: Statement, *args: Any) -> None:
        """Run an UPDATE that must hit a row; `NotFound(missing)` when it hits none."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------ events

    async def last_seq(self, account: str) -> int:
        """Highest committed seq of `account`, 0 if it has none."""
        return int(await self._fetch_value(_sql.LAST_SEQ, account))

    async def read_events(
        self, account: str, after_seq: int, limit: int = 1000
    ) -> list[OrderEvent]:
        """Events of `account` with seq > `after_seq`, oldest first (for replay)."""
        rows = await self._fetch(_sql.READ_EVENTS, account, after_seq, limit)
        return [
            OrderEvent(account, r["seq"], r["order_id"], self._decode(r["payload"])) for r in rows
        ]

    async def load_orders(self, account: str) -> list[Json]:
        """Latest payload of every order of `account`, in the order they were last updated."""
        return [self._decode(r["payload"]) for r in await self._fetch(_sql.LOAD_ORDERS, account)]

    async def finished_orders(
        self, account: str, before: str, limit: int
    ) -> list[Json] | None:
        """Final orders of `account` that settled before order `before` did (their latest
        payloads, the newest first); None when `before` names no order of the account."""
        seq = await self._fetch_value(_sql.ORDER_SEQ, account, before)
        if seq is None:
            return None
        rows = await self._fetch(_sql.FINISHED_ORDERS, account, seq, limit)
        return [self._decode(r["payload"]) for r in rows]

    # ----------------------------------------------------------------------------- batches

    async def update_batch(self, batch_id: str, *, status: str, result: Json | None = None) -> None:
        """Set the batch status (and result, when given)."""
        await self._update_one(
            f"no batch {batch_id}",
            _sql.UPDATE_BATCH,
            batch_id,
            status,
            self._encode(result),
            time.time(),
        )

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
        await self._update_one(
            f"no leg {index} in batch {batch_id}",
            _sql.UPDATE_LEG,
            batch_id,
            index,
            status,
            order_id,
            self._encode(detail),
            time.time(),
        )

    # ---------------------------------------------------------------------------- webhooks

    async def webhook_cursor(self, account: str) -> int:
        """How far `account`'s order events are in the outbox (0 when it has no cursor)."""
        return int(await self._fetch_value(_sql.WEBHOOK_CURSOR, account) or 0)

    async def ack_webhook(self, id: int) -> None:
        """Mark a delivery as delivered."""
        await self._update_one(f"no webhook delivery {id}", _sql.ACK_WEBHOOK, id, time.time())

    async def retry_webhook(self, id: int, next_attempt_at: float, error: str) -> None:
        """Release a delivery to be tried again at `next_attempt_at`."""
        await self._update_one(
            f"no webhook delivery {id}",
            _sql.RETRY_WEBHOOK,
            id,
            next_attempt_at,
            error,
            time.time(),
        )

    async def fail_webhook(self, id: int, error: str) -> None:
        """Give up on a delivery for good."""
        await self._update_one(
            f"no webhook delivery {id}", _sql.FAIL_WEBHOOK, id, error, time.time()
        )

    # ------------------------------------------------------------------------------- audit

    async def record_audit(self, entry: AuditEntry) -> None:
        """Append one audit entry."""
        await self._execute(
            _sql.RECORD_AUDIT,
            entry.account,
            entry.actor_name,
            entry.action,
            entry.order_id,
            self._encode(entry.detail),
            entry.at,
        )

    async def list_audit(self, account: str | None, limit: int = 100) -> list[AuditEntry]:
        """Newest first; all accounts when `account` is None."""
        rows = await self._fetch(_sql.LIST_AUDIT, account, limit)
        return [audit_from_row(r, self._decode) for r in rows]

    # ------------------------------------------------------------------------ saved baskets

    async def save_basket(self, basket: BasketRecord, max_baskets: int) -> BasketRecord:
        """Create or replace the account's basket of that name; BasketsFull for a new name
        when the account keeps `max_baskets` already. Returns it as stored."""
        rows = await self._fetch(_sql.SAVE_BASKET, basket.account, basket.name,
                                 self._encode(basket.legs), time.time(), max_baskets)
        if not rows:
            raise BasketsFull(f"account {basket.account!r} keeps {max_baskets} saved baskets")
        return basket_from_row(rows[0], self._decode)

    async def load_basket(self, account: str, name: str) -> BasketRecord | None:
        rows = await self._fetch(_sql.LOAD_BASKET, account, name)
        return basket_from_row(rows[0], self._decode) if rows else None

    async def list_baskets(self, account: str) -> list[BasketRecord]:
        """The account's saved baskets, by name."""
        return [basket_from_row(r, self._decode)
                for r in await self._fetch(_sql.LIST_BASKETS, account)]

    async def delete_basket(self, account: str, name: str) -> bool:
        """Whether there was such a basket (it is gone now)."""
        return bool(await self._fetch(_sql.DELETE_BASKET, account, name))

    # ---------------------------------------------------------------------- token rotations

    async def save_token_rotation(self, rotation: TokenRotation) -> None:
        await self._execute(_sql.SAVE_TOKEN_ROTATION, rotation.account, rotation.name,
                            rotation.digest, rotation.replaced, rotation.rotated_at)

    async def token_rotations(self) -> list[TokenRotation]:
        return [TokenRotation(r["account"], r["name"], r["digest"], r["replaced"],
                              r["rotated_at"])
                for r in await self._fetch(_sql.LIST_TOKEN_ROTATIONS)]
