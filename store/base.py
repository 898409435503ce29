"""Records, errors and the `Store` protocol shared by both engines.

Only these types cross the store boundary: callers never see asyncpg or sqlite3 objects, so an
engine can be swapped by changing the URL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

Json = dict[str, Any]

#: `health()` reports a database that does not answer within this as not ok.
HEALTH_TIMEOUT_S = 2.0

#: Batch statuses after which the coordinator has nothing left to do.
FINAL_BATCH_STATUSES: frozenset[str] = frozenset(
    {"success", "rolled_back", "partial", "rollback_failed", "rejected"}
)


# ----------------------------------------------------------------------------------- errors


class StoreError(Exception):
    """Base of every error the store raises (engine exceptions are chained, never leaked)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached, or the store is closed."""


class StoreOpenFailed(StoreUnavailable):
    """The store could not be opened at all: its message is one line naming where (never a
    password) and why, fit to end a start-up with."""


class FencedOut(StoreError):
    """[cluster]: a write on behalf of `accounts` was refused because this node no longer holds
    their epoch in `account_owner` (another node took them over). Nothing of it was written; the
    account's owner here must step down, not retry."""

    def __init__(self, accounts: Sequence[str]) -> None:
        super().__init__(f"fenced out of {', '.join(accounts)}: another node owns them now")
        self.accounts = tuple(accounts)


class NotFound(StoreError):
    """An update named a batch or leg that does not exist."""


class BasketsFull(StoreError):
    """`save_basket` found the account at its cap of saved baskets (and none of that name)."""


class IdempotencyConflict(StoreError):
    """`create_batch` found a batch with the same (account, idempotency_key)."""

    def __init__(self, existing: BatchRecord, legs: Sequence[LegRecord] = ()) -> None:
        super().__init__(
            f"idempotency key {existing.idempotency_key!r} of account {existing.account!r} "
            f"is taken by batch {existing.batch_id}"
        )
        self.existing = existing
        self.legs = list(legs)


# ---------------------------------------------------------------------------------- records


@attrs.frozen
class OrderEvent:
    """One committed order update: the replay source for subscribers that resume with `since`."""

    account: str
    seq: int
    order_id: str
    payload: Json


@attrs.frozen
class AccountState:
    """What an account's actor starts from: the latest payload of each order (in the order they
    were last updated), the last committed seq (0: none) and the last events (oldest first)."""

    orders: list[Json]
    seq: int
    recent: list[OrderEvent]


@attrs.frozen
class BatchRecord:
    """A multi-leg batch, written before any leg is sent (write-ahead)."""

    batch_id: str
    account: str
    idempotency_key: str | None
    request_hash: str
    request: Json
    status: str
    result: Json | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


@attrs.frozen
class LegRecord:
    """One order of a batch; reverse/retry orders are legs of kind "reverse" with their own tag."""

    batch_id: str
    index: int
    tag: str
    status: str
    order_id: str | None = None
    request: Json = attrs.field(factory=dict)
    detail: Json = attrs.field(factory=dict)
    kind: str = "leg"


@attrs.frozen
class WebhookDelivery:
    """One (event, url) delivery in the outbox; `id`/`attempts` are set by the store."""

    event_id: str
    account: str
    url: str
    event_type: str
    payload: Json
    id: int | None = None
    attempts: int = 0


@attrs.frozen
class AuditEntry:
    """Who did what to which order (kill switch, restarts, rollbacks)."""

    account: str = attrs.field(metadata={"doc": "the account"})
    actor_name: str = attrs.field(metadata={"doc": "who: a token's name (never its value) or "
                                                   "the component that acted"})
    action: str = attrs.field(metadata={"doc": "kill, restart, credentials, login, rollback, "
                                               "..."})
    order_id: str | None = attrs.field(metadata={"doc": "the order concerned, if one"})
    detail: Json = attrs.field(metadata={"doc": "what was done (the kill switch's report, ...)"})
    at: float = attrs.field(metadata={"doc": "when, Unix time"})


@attrs.frozen
class TokenRotation:
    """A client token rotated since it was configured: hex SHA-256 digests of its value now
    and of the configured value it first replaced (values are never stored)."""

    account: str
    name: str
    digest: str
    replaced: str
    rotated_at: float = 0.0


@attrs.frozen
class BasketRecord:
    """A basket saved under a name for an account: its legs as a batch request's orders."""

    account: str
    name: str
    legs: list[Json]
    created_at: float = 0.0
    updated_at: float = 0.0


@attrs.frozen
class Pruned:
    """What `Store.prune` deleted, rows per table."""

    order_events: int = 0
    orders: int = 0
    batches: int = 0
    webhook_outbox: int = 0


BatchWithLegs = tuple[BatchRecord, list[LegRecord]]


class Store(Protocol):
    """What the rest of orderdesk may call; both engines implement exactly this."""

    engine: str

    async def append_events(self, account: str, orders: Sequence[Json]) -> list[int]: ...
    async def last_seq(self, account: str) -> int: ...
    async def read_events(
        self, account: str, after_seq: int, limit: int = 1000
    ) -> list[OrderEvent]: ...
    async def load_orders(self, account: str) -> list[Json]: ...

    async def create_batch(self, batch: BatchRecord, legs: Sequence[LegRecord]) -> None: ...
    async def update_batch(
        self, batch_id: str, *, status: str, result: Json | None = None
    ) -> None: ...
    async def update_leg(
        self,
        batch_id: str,
        index: int,
        *,
        status: str,
        order_id: str | None = None,
        detail: Json | None = None,
    ) -> None: ...
    async def add_leg(self, leg: LegRecord) -> None: ...
    async def discard_batch(self, batch_id: str) -> None: ...
    async def get_batch(self, batch_id: str) -> BatchWithLegs | None: ...
    async def find_batch(self, account: str, idempotency_key: str) -> BatchWithLegs | None: ...
    async def unfinished_batches(self) -> list[BatchWithLegs]: ...
    async def purge_idempotency_keys(self, older_than: float) -> int: ...

    # `cursors`: per account, the seq up to which every order event of it now has its outbox
    # rows, written in the same transaction as `deliveries` and never moved back. An account's
    # cursor is 0 until set; `start_webhook_cursor` creates it, at `seq` or else at the
    # account's last committed seq (its webhooks start now, not with its history).
    async def enqueue_webhooks(
        self, deliveries: Sequence[WebhookDelivery], cursors: Mapping[str, int] | None = None
    ) -> int: ...
    async def webhook_cursor(self, account: str) -> int: ...
    async def start_webhook_cursor(self, account: str, seq: int | None = None) -> int: ...
    # Leases due rows; `in_order`: only the oldest pending row of each (account, url), so that
    # a stream is delivered in order (the dispatcher's claims; without it, any due row).
    async def claim_webhooks(
        self, limit: int, now: float, lease_s: float, *, in_order: bool = False
    ) -> list[WebhookDelivery]: ...
    async def ack_webhook(self, id: int) -> None: ...
    async def retry_webhook(self, id: int, next_attempt_at: float, error: str) -> None: ...
    async def fail_webhook(self, id: int, error: str) -> None: ...

    async def record_audit(self, entry: AuditEntry) -> None: ...
    async def list_audit(self, account: str | None, limit: int = 100) -> list[AuditEntry]: ...

    # Saved baskets, keyed (account, name). `save_basket` creates or replaces; a new name
    # beyond `max_baskets` of the account raises BasketsFull. `delete_basket`: whether it was.
    async def save_basket(self, basket: BasketRecord, max_baskets: int) -> BasketRecord: ...
    async def load_basket(self, account: str, name: str) -> BasketRecord | None: ...
    async def list_baskets(self, account: str) -> list[BasketRecord]: ...
    async def delete_basket(self, account: str, name: str) -> bool: ...

    # Client token rotations, keyed (account, name): `save_token_rotation` keeps the first
    # rotation's `replaced`.
    async def save_token_rotation(self, rotation: TokenRotation) -> None: ...
    async def token_rotations(self) -> list[TokenRotation]: ...

    async def health(self) -> Json: ...

    # Retention (`_retention.py`): older than `before`, what nothing needs any more.
    async def prune(self, before: float) -> Pruned: ...
    # Final orders (latest payloads) that settled before order `before` did (seq order), the
    # newest first; None when `before` names no order of the account.
    async def finished_orders(
        self, account: str, before: str, limit: int
    ) -> list[Json] | None: ...


def order_fields(payload: Json) -> tuple[str, str | None, str | None]:
    """(order_id, status, tag) of an order payload; an order without an id cannot be stored."""
    order_id = payload.get("order_id")
    if not order_id:
        raise StoreError("order payload has no order_id")
    status = payload.get("status")
    tag = payload.get("tag")
    return str(order_id), None if status is None else str(status), None if tag is None else str(tag)
