"""What the coordinator answers, as typed values: a single order, a cancel, a batch's result
or progress, the kill switch's report.

The web front unstructures them with its converter; fields marked `omit_if_none` are left out
of the JSON when None (they were absent before results were typed, and stay so). The API
contract is generated from these classes, so every field says what it means for a client.
"""

from __future__ import annotations

from typing import Any

import attrs
import cattrs

__all__ = ["OMITTING", "BasketMarginQuote", "BatchProgress", "BatchResult", "CancelRequested",
           "CancelledOrder",
           "ExitReport", "Exposure", "FlattenOrder", "FlattenedPosition", "HeldPosition",
           "KillReport", "LateOrder", "LegProgress", "LegResult", "OrderModified",
           "OrderOutcomeUnknown",
           "OrderPlaced",
           "RollbackDetail",           "StoppedBatch", "Symbol", "as_json", "stored_result"]


@attrs.frozen
class OrderPlaced:
    """The broker accepted the order (it may still fill, rest or be rejected later: follow it
    on the order websocket by `order_id` or `tag`)."""

    order_id: str | None = attrs.field(metadata={"doc": "the broker's order id"})
    tag: str = attrs.field(metadata={"doc": "orderdesk's tag of the order (at most 20 "
                                            "characters), the same for every retry with one "
                                            "Idempotency-Key"})
    replayed: bool = attrs.field(default=False, metadata={
        "doc": "present and true when this answers a retry: the order placed by the first "
               "attempt with this Idempotency-Key, nothing placed again"})


@attrs.frozen
class OrderOutcomeUnknown:
    """The order may or may not be at the broker (the place call timed out or failed with a
    5xx and no order carries the tag yet): look it up by `tag`, never re-send it blindly."""

    tag: str = attrs.field(metadata={"doc": "the tag to look the order up by"})
    message: str = attrs.field(metadata={"doc": "what happened and what to do"})
    status: str = attrs.field(default="unknown", metadata={"doc": "always 'unknown'"})


@attrs.frozen
class BasketMarginQuote:
    """What a basket would need before it is placed: the broker's basket margin (with hedge
    benefit) against the funds available, and its net premium at last prices. Read only:
    nothing is placed or stored."""

    required: float = attrs.field(metadata={"doc": "margin the basket needs with hedge "
                                                   "benefit, in rupees"})
    available: float | None = attrs.field(metadata={"doc": "funds available for it, in "
                                                           "rupees; null when the broker "
                                                           "does not say"})
    fits: bool | None = attrs.field(metadata={"doc": "whether `required` fits `available`; "
                                                     "null when `available` is unknown"})
    short_by: float | None = attrs.field(metadata={"doc": "how much more margin is needed "
                                                          "(0 when it fits), in rupees; null "
                                                          "when `available` is unknown"})
    net_premium: float | None = attrs.field(metadata={
        "doc": "premium at the broker's last prices, quantity times price summed over the legs: "
               "positive a net credit (SELL), negative a net debit (BUY); null when a leg's "
               "last price is unknown"})


@attrs.frozen
class CancelRequested:
    """The broker accepted the cancel; the order's final state arrives on the websocket."""

    order_id: str = attrs.field(metadata={"doc": "the order asked to be cancelled"})


@attrs.frozen
class OrderModified:
    """The broker accepted the modification; the order's new state arrives on the websocket."""

    order_id: str = attrs.field(metadata={"doc": "the order modified"})
    quantity: int = attrs.field(metadata={"doc": "its quantity now asked, in units"})
    order_type: str = attrs.field(metadata={"doc": "its order type now asked"})
    price: float | None = attrs.field(metadata={"doc": "its limit price now asked (null: none)"})
    trigger_price: float | None = attrs.field(metadata={
        "doc": "its trigger price now asked (null: none)"})


def _omitted(doc: str) -> Any:
    """An optional field, left out of the JSON (not null) when it does not apply."""
    return attrs.field(default=None, metadata={"doc": doc, "omit_if_none": True})


@attrs.frozen(kw_only=True)
class RollbackDetail:
    """How a leg's rollback went: its reverse orders and what is left of the leg's fill."""

    action: str = attrs.field(metadata={
        "doc": "none (nothing to reverse), cancelled (the leg was cancelled before it filled), "
               "flattened (its fill was reversed), failed (exposure may remain: see error)"})
    order_id: str | None = attrs.field(metadata={"doc": "the last reverse order, if any"})
    status: str | None = attrs.field(metadata={"doc": "that reverse order's status"})
    filled: int = attrs.field(metadata={"doc": "units the reverse orders filled"})
    remaining: int | None = attrs.field(metadata={
        "doc": "units of the leg's fill still held; null: unknown (see unknown_tags)"})
    unknown_tags: list[str] | None = _omitted(
        "tags of orders whose outcome is unknown (the exposure is not guessed)")
    quantity_at_most: int | None = _omitted(
        "with unknown_tags: the most the unknown orders can hold")
    open_order_ids: list[str] | None = _omitted("orders of the leg still working")
    error: str | None = _omitted("why the rollback failed, for a person")
    modifications: int | None = _omitted("times the reverse orders were re-priced")


@attrs.frozen(kw_only=True)
class LegResult:
    """One leg of a finished batch: its broker order and, when rolled back, how."""

    index: int = attrs.field(metadata={"doc": "the leg's position in the request's orders"})
    order_id: str | None = attrs.field(metadata={"doc": "the broker's order id (null: none)"})
    tag: str = attrs.field(metadata={"doc": "orderdesk's tag of the leg's order"})
    status: str = attrs.field(metadata={"doc": "the order's last status (Kite's: COMPLETE, "
                                               "REJECTED, CANCELLED, OPEN, ...)"})
    filled_quantity: int = attrs.field(metadata={"doc": "units filled"})
    average_price: float | None = attrs.field(metadata={"doc": "the average fill price"})
    error: str | None = attrs.field(metadata={"doc": "why the leg failed, if it did"})
    rollback: RollbackDetail | None = attrs.field(metadata={
        "doc": "how the leg was rolled back (null: no rollback touched it)"})


@attrs.frozen(kw_only=True)
class Exposure:
    """What a leg whose rollback failed leaves held: handle it by hand."""

    index: int = attrs.field(metadata={"doc": "the leg's index"})
    tradingsymbol: str = attrs.field(metadata={"doc": "the instrument held"})
    exchange: str = attrs.field(metadata={"doc": "its exchange"})
    product: str = attrs.field(metadata={"doc": "its product"})
    transaction_type: str = attrs.field(metadata={"doc": "the leg's side"})
    quantity: int | None = attrs.field(metadata={
        "doc": "units still held; null: unknown (see unknown_tags, quantity_at_most)"})
    open_order_ids: list[str] = attrs.field(metadata={"doc": "orders still working"})
    unknown_tags: list[str] | None = _omitted("tags of orders whose outcome is unknown")
    quantity_at_most: int | None = _omitted("with unknown_tags: the most that can be held")


@attrs.frozen(kw_only=True)
class BatchResult:
    """A finished batch. `succeeded`: legs whose fills are still held at the end (all for
    success, 0 for rolled_back); `failed`: legs rejected, cancelled or unfilled; `order_ids`:
    the legs' broker orders in leg order (reverse orders are in `legs[].rollback`)."""

    status: str = attrs.field(metadata={
        "doc": "success, rolled_back, partial (no rollback asked) or rollback_failed"})
    batch_id: str = attrs.field(metadata={"doc": "the batch's id"})
    total_orders: int = attrs.field(metadata={"doc": "legs in the batch"})
    succeeded: int = attrs.field(metadata={"doc": "legs whose fills are still held"})
    failed: int = attrs.field(metadata={"doc": "legs rejected, cancelled or unfilled"})
    order_ids: list[str] = attrs.field(metadata={"doc": "the legs' broker orders, in leg order"})
    legs: list[LegResult] = attrs.field(metadata={"doc": "each leg, in order"})
    duration_ms: float = attrs.field(metadata={"doc": "milliseconds from start to end"})
    execution: str = attrs.field(metadata={"doc": "parallel or hedge_first, as run"})
    execution_reason: str | None = _omitted("why it ran otherwise than asked")
    exposure: list[Exposure] | None = _omitted(
        "with rollback_failed: what each failed rollback left held")
    late_orders: list[LateOrder] | None = _omitted(
        "orders that reached the broker with a leg's tag after recovery had concluded that "
        "leg not placed (a paused or killed node's order landing late), and how each was undone")


@attrs.frozen(kw_only=True)
class LateOrder:
    """An order that landed at the broker with a leg's tag after recovery concluded the leg
    NOT_PLACED: cancelled if open, its fill flattened by reverse orders of the leg."""

    index: int = attrs.field(metadata={"doc": "the leg whose tag it carries"})
    tag: str = attrs.field(metadata={"doc": "that tag"})
    order_id: str = attrs.field(metadata={"doc": "the broker's order id of the late order"})
    status: str = attrs.field(metadata={"doc": "its last status (CANCELLED, COMPLETE, ...)"})
    filled_quantity: int = attrs.field(metadata={"doc": "units it filled"})
    rollback: RollbackDetail = attrs.field(metadata={
        "doc": "how it was undone (action failed: exposure may remain, see error)"})


@attrs.frozen(kw_only=True)
class LegProgress:
    """One leg of a batch still running, as last stored."""

    index: int = attrs.field(metadata={"doc": "the leg's index"})
    order_id: str | None = attrs.field(metadata={"doc": "the broker's order id, once placed"})
    tag: str = attrs.field(metadata={"doc": "orderdesk's tag of the leg's order"})
    status: str = attrs.field(metadata={"doc": "the last status stored (PENDING before it is "
                                               "sent)"})
    filled_quantity: int | None = attrs.field(metadata={"doc": "units filled, when known"})
    average_price: float | None = attrs.field(metadata={"doc": "the average fill price"})
    error: str | None = attrs.field(metadata={"doc": "why the leg failed, if it did"})


@attrs.frozen(kw_only=True)
class BatchProgress:
    """A batch not finished yet (`GET .../batch-orders/{id}` while it runs, or one stored
    unfinished): its legs as last stored."""

    status: str = attrs.field(metadata={"doc": "running (or the stored status)"})
    batch_id: str = attrs.field(metadata={"doc": "the batch's id"})
    total_orders: int = attrs.field(metadata={"doc": "legs in the batch"})
    order_ids: list[str] = attrs.field(metadata={"doc": "broker orders placed so far"})
    legs: list[LegProgress] = attrs.field(metadata={"doc": "each leg, in order"})
    duration_ms: float = attrs.field(metadata={"doc": "milliseconds since it was stored"})
    execution: str = attrs.field(metadata={"doc": "parallel or hedge_first, as run"})
    execution_reason: str | None = _omitted("why it runs otherwise than asked")


@attrs.frozen(kw_only=True)
class Symbol:
    """An instrument, by exchange and trading symbol."""

    exchange: str = attrs.field(metadata={"doc": "the exchange"})
    tradingsymbol: str = attrs.field(metadata={"doc": "the trading symbol"})


@attrs.frozen(kw_only=True)
class CancelledOrder:
    """An open order the kill switch cancelled, followed to its final state."""

    order_id: str = attrs.field(metadata={"doc": "the broker's order id"})
    status: str = attrs.field(metadata={"doc": "its status at the end (CANCELLED unless it "
                                               "filled or is still open)"})
    filled_quantity: int = attrs.field(metadata={"doc": "units it filled"})
    error: str | None = attrs.field(metadata={"doc": "why the cancel failed, if it did"})


@attrs.frozen(kw_only=True)
class FlattenOrder:
    """One order the kill switch sent to flatten a position."""

    order_id: str | None = attrs.field(metadata={"doc": "the broker's order id (null: the "
                                                        "outcome is unknown; see tag)"})
    tag: str = attrs.field(metadata={"doc": "orderdesk's tag of the order"})
    status: str = attrs.field(metadata={"doc": "its status at the end"})
    filled_quantity: int = attrs.field(metadata={"doc": "units it filled"})
    order_type: str = attrs.field(metadata={"doc": "MARKET, or LIMIT where MARKET is refused"})
    modifications: int = attrs.field(metadata={"doc": "times it was re-priced"})
    error: str | None = attrs.field(metadata={"doc": "why it failed, if it did"})


@attrs.frozen(kw_only=True)
class HeldPosition:
    """A net position (still held after the kill switch, or one it flattened)."""

    tradingsymbol: str = attrs.field(metadata={"doc": "the instrument"})
    exchange: str = attrs.field(metadata={"doc": "its exchange"})
    product: str = attrs.field(metadata={"doc": "its product"})
    quantity: int = attrs.field(metadata={
        "doc": "the net quantity (negative: short); of a flattened position, before"})


@attrs.frozen(kw_only=True)
class FlattenedPosition(HeldPosition):
    """A net position the kill switch flattened, with the orders it took."""

    orders: list[FlattenOrder] = attrs.field(factory=list, metadata={
        "doc": "the orders sent to flatten it"})
    batches: list[str] = attrs.field(factory=list, metadata={
        "doc": "the stopped batches whose fills it held"})


@attrs.frozen(kw_only=True)
class StoppedBatch:
    """A batch the kill switch stopped, with the status it reached."""

    batch_id: str = attrs.field(metadata={"doc": "the batch's id"})
    status: str | None = attrs.field(metadata={"doc": "its final status (null: unknown)"})
    flattened: list[Symbol] = attrs.field(metadata={
        "doc": "the positions of its fills that the kill switch flattened"})


@attrs.frozen(kw_only=True)
class KillReport:
    """What the kill switch did and what is left: `status` is done only when nothing is (no
    position, no order still open, no symbol left alone, no broker error)."""

    account: str = attrs.field(metadata={"doc": "the account"})
    status: str = attrs.field(metadata={"doc": "done or incomplete"})
    cancelled: list[CancelledOrder] = attrs.field(metadata={"doc": "open orders cancelled"})
    flattened: list[FlattenedPosition] = attrs.field(metadata={"doc": "positions flattened"})
    remaining: list[HeldPosition] | str = attrs.field(metadata={
        "doc": "positions still held after it; \"unknown\" when they could not be read"})
    remaining_reason: str | None = _omitted("with remaining unknown: why")
    open_orders: list[str] = attrs.field(metadata={"doc": "orders still open at the end"})
    errors: list[str] = attrs.field(metadata={"doc": "broker errors met"})
    warnings: list[str] = attrs.field(metadata={"doc": "what went otherwise than planned"})
    unfinished: list[str] = attrs.field(metadata={
        "doc": "batches (or single orders' tags) still unfinished, left to their rollback"})
    skipped: list[Symbol] = attrs.field(metadata={
        "doc": "the symbols of the unfinished ones, left alone"})
    stopped_batches: list[StoppedBatch] = attrs.field(metadata={
        "doc": "the batches it stopped, with their final status"})


@attrs.frozen(kw_only=True)
class ExitReport:
    """What an exit did (`POST /accounts/{id}/positions/exit`): `status` is done only when the
    position is flat and no order it sent is still open."""

    account: str = attrs.field(metadata={"doc": "the account"})
    exchange: str = attrs.field(metadata={"doc": "the position's exchange"})
    tradingsymbol: str = attrs.field(metadata={"doc": "the position's trading symbol"})
    product: str = attrs.field(metadata={"doc": "the position's product"})
    quantity: int = attrs.field(metadata={
        "doc": "the net quantity it flattened, as it was before (negative: short)"})
    status: str = attrs.field(metadata={"doc": "done or incomplete"})
    orders: list[FlattenOrder] = attrs.field(metadata={
        "doc": "the orders it sent, each followed to its final state (market-protected, at "
               "most the freeze quantity each)"})
    remaining: int | None = attrs.field(metadata={
        "doc": "the net quantity still held after it (null: the positions could not be read)"})
    open_orders: list[str] = attrs.field(metadata={"doc": "its orders still open at the end"})
    warnings: list[str] = attrs.field(metadata={"doc": "what went otherwise than planned"})
    replayed: bool = attrs.field(default=False, metadata={
        "doc": "true: an exit sent before with this Idempotency-Key, answered again; nothing "
               "was sent now"})


#: The typed results that leave fields out when they do not apply (`omit_if_none`).
OMITTING = (RollbackDetail, Exposure, BatchResult, BatchProgress, KillReport)
_STORED = cattrs.Converter()


def as_json(value: Any) -> dict[str, Any]:
    """A typed result as the JSON the store and the webhook events keep: the same fields as
    the web front's converter gives clients."""
    return attrs.asdict(value, filter=_kept)


def _kept(attribute: attrs.Attribute[Any], value: Any) -> bool:
    return not (value is None and attribute.metadata.get("omit_if_none"))


def stored_result(raw: dict[str, Any]) -> BatchResult:
    """A batch result as stored (`as_json`, or the dict stored before results were typed)."""
    return _STORED.structure(raw, BatchResult)
