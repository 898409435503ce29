"""A batch's legs and THE tag scheme of every order orderdesk places.

A tag is `od` + an id of 10 base32 characters + a position + a kind + an attempt digit, at most
20 characters (Kite's limit):

- `L` a batch leg: `od{batch}{leg}L0`;
- `R` a reverse order undoing a leg: the leg's tag with `L0` replaced by `R{attempt}`, so
  recovery finds every reverse of a leg at the broker by its prefix, even one never stored;
- `S` a single order: `od{id}0S0`, the id random, or derived from (account, Idempotency-Key)
  so that a retry finds the first order by its tag;
- `K` a kill switch's flattening order: `od{kill}{position:02d}K{attempt}`;
- `X` an order exiting one position: `od{exit}00X{attempt}`.

A reverse order is stored as a row of its batch at index `100 × (attempt + 1) + leg index`:
`reverse_index` encodes it, `reverse_of` decodes it; leg indices stay below 100.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from collections.abc import Sequence
from typing import Any

import attrs

from brokers.base import (
    EVENT_ONLY_STATUSES,
    FINAL_STATUSES,
    Order,
    OrderRequest,
    stays_final,
)
from store import LegRecord

__all__ = [
    "NOT_SENT",
    "Leg",
    "batch_legs",
    "exit_id",
    "exit_tag",
    "kill_tag",
    "new_batch_id",
    "placed_request",
    "reverse_index",
    "reverse_of",
    "reverse_prefix",
    "reverse_request",
    "reverse_tag",
    "single_tag",
    "tag_for",
]

log = logging.getLogger("actors.batch")  # the coordinator's log, as before the split

# Stored leg states that say no POST of the leg went out.
NOT_SENT = frozenset({"PENDING", "NOT_PLACED"})

# Stored indices from here up are reverse orders (`reverse_index`).
_REVERSES = 100


def new_batch_id() -> str:
    """10 characters of lowercase base32 (50 random bits): short enough for Kite's tags."""
    return base64.b32encode(secrets.token_bytes(7)).decode().lower()[:10]


def tag_for(batch_id: str, index: int, kind: str, attempt: int) -> str:
    """`od` + batch id + leg number + L (leg) / R (reverse) / S (single) + retry digit."""
    return f"od{batch_id}{index}{kind}{attempt}"


def single_tag(account: str, idempotency_key: str | None = None) -> str:
    """The tag of a single order. With an `idempotency_key`: the same for every retry, so a
    retry finds the first order by its tag instead of placing another."""
    if idempotency_key is None:
        return tag_for(new_batch_id(), 0, "S", 0)
    digest = hashlib.sha256(f"{account}\n{idempotency_key}".encode()).digest()
    return tag_for(base64.b32encode(digest).decode().lower()[:10], 0, "S", 0)


def exit_id(account: str, idempotency_key: str | None = None) -> str:
    """The id of an exit (its orders are tagged `exit_tag(exit_id, attempt)`). With an
    `idempotency_key`: the same for every retry, so a retry finds the first exit's orders."""
    if idempotency_key is None:
        return new_batch_id()
    digest = hashlib.sha256(f"exit\n{account}\n{idempotency_key}".encode()).digest()
    return base64.b32encode(digest).decode().lower()[:10]


def kill_tag(kill_id: str, position: int, attempt: int | None = None) -> str:
    """The tag of the kill switch's `attempt`th order flattening its `position`th position;
    without an attempt, the position's own (a leg that "filled" it; never sent)."""
    return f"od{kill_id}{position:02d}K{'' if attempt is None else attempt}"


def exit_tag(exit_id: str, attempt: int | None = None) -> str:
    """The tag of an exit's `attempt`th order; without an attempt, the prefix every order of
    the exit shares (a retry finds them by it)."""
    return f"od{exit_id}00X{'' if attempt is None else attempt}"


def reverse_tag(leg_tag: str, attempt: int) -> str:
    """The tag of a leg's `attempt`th reverse order: derived from the leg's own tag, so recovery
    finds a reverse at the broker by its tag even when its row was never stored."""
    return f"{reverse_prefix(leg_tag)}{attempt}"


def reverse_prefix(leg_tag: str) -> str:
    """What every reverse tag of a leg starts with (legs are numbered 0..9: one digit)."""
    return f"{leg_tag[:-2]}R"


def reverse_index(leg_index: int, attempt: int) -> int:
    """The stored index of a reverse order: 100 x (attempt + 1) + the leg's index."""
    return _REVERSES * (attempt + 1) + leg_index


def reverse_of(index: int) -> tuple[int, int]:
    """A stored row's index decoded: (its leg's index, its reverse attempt; -1 for the leg's
    own row)."""
    return index % _REVERSES, index // _REVERSES - 1


def placed_request(request: OrderRequest, tag: str | None, protection: float) -> OrderRequest:
    """`request` as orderdesk places it: tagged, a MARKET or SL-M order with the market
    protection `protection` unless it states its own."""
    own = request.market_protection
    if request.order_type in ("MARKET", "SL-M") and own is None:
        own = protection
    return attrs.evolve(request, tag=tag, market_protection=own)


def batch_legs(
    batch_id: str, requests: Sequence[OrderRequest], protection: float
) -> tuple[Leg, ...]:
    """A new batch's legs, numbered from 0 and tagged `tag_for(batch_id, n, "L", 0)`."""
    return tuple(Leg(n, tag_for(batch_id, n, "L", 0),
                     placed_request(request, tag_for(batch_id, n, "L", 0), protection))
                 for n, request in enumerate(requests))


def first_wave(execution: str, legs: Sequence[Leg]) -> list[Leg]:
    """The legs a batch sends at once: all of them, or (hedge-first) its BUY legs; the SELL
    legs go only once every BUY leg is COMPLETE."""
    return [leg for leg in legs
            if execution == "parallel" or leg.request.transaction_type == "BUY"]


def reverse_request(
    request: OrderRequest, quantity: int, tag: str | None, protection: float
) -> OrderRequest:
    """The order that undoes `quantity` of `request`: opposite side, MARKET with protection."""
    side = "SELL" if request.transaction_type == "BUY" else "BUY"
    return OrderRequest(request.tradingsymbol, request.exchange, side, "MARKET", quantity,
                        request.product, tag=tag, market_protection=protection)


@attrs.define(eq=False)
class Leg:
    """One order of a batch (or a reverse order) as the coordinator knows it; one owner task."""

    index: int
    tag: str
    request: OrderRequest
    order_id: str | None = None
    status: str = "PENDING"  # PENDING, PLACING, PLACED, UNKNOWN, NOT_PLACED or Kite's status
    filled: int = 0
    average_price: float = 0.0
    error: str | None = None
    status_message: str | None = None
    sent: bool = False  # a POST may have reached the broker (set once its token is granted)
    rollback: dict[str, Any] | None = None
    reverse_filled: int = 0  # filled by reverse orders that are over (final)
    next_attempt: int = 0
    modifications: int = 0  # modify calls asked for this order (re-pricing a reverse)
    # The reverse order of this leg now working (or whose outcome is unknown); its fills count
    # towards the reversed quantity until it is final and added to `reverse_filled`.
    reverse: Leg | None = None

    @classmethod
    def from_record(cls, record: LegRecord) -> Leg:
        leg = cls(record.index, record.tag, OrderRequest(**record.request), record.order_id)
        detail = record.detail or {}
        if record.status in FINAL_STATUSES and record.order_id is None:
            leg.status = record.status  # refused when posted: never reached the book
        else:
            # The broker's listing is the truth after a crash: a stored final state is re-read.
            leg.status = "PLACED" if record.status in FINAL_STATUSES else record.status
            leg.sent = record.status not in NOT_SENT
        leg.filled = int(detail.get("filled_quantity") or 0)
        leg.average_price = float(detail.get("average_price") or 0.0)
        leg.error = detail.get("error")
        leg.status_message = detail.get("status_message")
        leg.rollback = detail.get("rollback")
        leg.modifications = int(detail.get("modifications") or 0)
        return leg

    @property
    def is_final(self) -> bool:
        return stays_final(self.status)

    @property
    def is_reverse(self) -> bool:
        return self.index >= _REVERSES

    @property
    def complete(self) -> bool:
        return self.status == "COMPLETE" and self.filled >= self.request.quantity

    @property
    def unknown(self) -> bool:
        """Sent, and no order with its tag found (yet): it may still land at the broker."""
        return self.sent and self.order_id is None and not self.is_final

    @property
    def reversed_qty(self) -> int:
        """Filled by reverse orders, the one still working included."""
        return self.reverse_filled + (self.reverse.filled if self.reverse is not None else 0)

    @property
    def exposure(self) -> int:
        return max(self.filled - self.reversed_qty, 0)

    def matches(self, order: Order) -> bool:
        """Is `order` this leg's? Its tag, and its id once the leg knows it: an id alone can
        name another order (a venue that reused it), and the book may hold that one."""
        if (order.tag or "") != self.tag:
            return False
        return self.order_id is None or order.order_id == self.order_id

    def absorb(self, order: Order) -> None:
        """Take a broker update of this leg's order (any other is ignored, logged); final
        states stay final (`stays_final`), fills never decrease."""
        if not self.matches(order):
            log.warning("leg %s (order %s) ignored an update of order %s tagged %s",
                        self.tag, self.order_id, order.order_id, order.tag)
            return
        if self.is_final:
            return
        if order.status not in EVENT_ONLY_STATUSES:
            self.status = order.status
        self.filled = max(self.filled, order.filled_quantity)
        self.average_price = order.average_price or self.average_price
        self.status_message = order.status_message or self.status_message
        if self.complete:
            self.error = None  # it ended COMPLETE after all: an earlier error is stale

    def detail(self) -> dict[str, Any]:
        return {"filled_quantity": self.filled, "average_price": self.average_price,
                "error": self.error, "status_message": self.status_message,
                "rollback": self.rollback, "modifications": self.modifications}
