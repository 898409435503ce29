"""Rows to records and back, for both engines.

asyncpg decodes jsonb itself (the pool's codec) and sqlite3 stores JSON as text, so each mapper
takes the engine's `decode` (or `encode`) for the JSON columns; both row types are read by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .base import (
    AuditEntry,
    BasketRecord,
    BatchRecord,
    Json,
    LegRecord,
    WebhookDelivery,
    order_fields,
)

Codec = Callable[[Any], Any]


class Row(Protocol):
    """An `asyncpg.Record` or a `sqlite3.Row`."""

    def __getitem__(self, key: str, /) -> Any: ...


def _as_is(value: Any) -> Any:
    return value


def event_rows(
    numbered: list[tuple[str, int, Json]], encode: Codec = _as_is
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The rows a numbered group-commit round writes (`group_commit.assign_seqs`).

    Returns the `order_events` rows (account, seq, order_id, payload) and the `orders` rows
    (account, order_id, payload, status, tag, seq), one per order: its last update in the round.
    """
    events = []
    latest: dict[tuple[str, str], tuple[Any, ...]] = {}
    for account, seq, payload in numbered:
        order_id, status, tag = order_fields(payload)
        stored = encode(payload)
        events.append((account, seq, order_id, stored))
        latest[(account, order_id)] = (account, order_id, stored, status, tag, seq)
    return events, list(latest.values())


def batch_from_row(row: Row, decode: Codec = _as_is) -> BatchRecord:
    return BatchRecord(
        batch_id=row["batch_id"],
        account=row["account"],
        idempotency_key=row["idempotency_key"],
        request_hash=row["request_hash"],
        request=decode(row["request"]),
        status=row["status"],
        result=decode(row["result"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def leg_from_row(row: Row, decode: Codec = _as_is) -> LegRecord:
    return LegRecord(
        batch_id=row["batch_id"],
        index=row["idx"],
        tag=row["tag"],
        status=row["status"],
        order_id=row["order_id"],
        request=decode(row["request"]),
        detail=decode(row["detail"]),
        kind=row["kind"],
    )


#: The columns `leg_values` fills, in its order.
LEG_COLUMNS = "batch_id, idx, kind, tag, status, order_id, request, detail, updated_at"


def leg_values(leg: LegRecord, now: float, encode: Codec = _as_is) -> tuple[Any, ...]:
    return (
        leg.batch_id,
        leg.index,
        leg.kind,
        leg.tag,
        leg.status,
        leg.order_id,
        encode(leg.request),
        encode(leg.detail),
        now,
    )


def delivery_from_row(row: Row, decode: Codec = _as_is) -> WebhookDelivery:
    return WebhookDelivery(
        event_id=row["event_id"],
        account=row["account"],
        url=row["url"],
        event_type=row["event_type"],
        payload=decode(row["payload"]),
        id=row["id"],
        attempts=row["attempts"],
    )


def audit_from_row(row: Row, decode: Codec = _as_is) -> AuditEntry:
    return AuditEntry(
        row["account"],
        row["actor_name"],
        row["action"],
        row["order_id"],
        decode(row["detail"]),
        row["at"],
    )


def basket_from_row(row: Row, decode: Codec = _as_is) -> BasketRecord:
    return BasketRecord(
        account=row["account"],
        name=row["name"],
        legs=decode(row["legs"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
