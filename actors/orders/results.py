"""What the batch coordinator answers and stores: results, progress, errors, request hashes."""

from __future__ import annotations

import time
from typing import Any

import attrs

from store import BatchRecord, LegRecord

from ..outcomes import (
    BatchProgress,
    BatchResult,
    Exposure,
    LegProgress,
    LegResult,
    RollbackDetail,
)
from .legs import Leg

FINAL = frozenset({"success", "rolled_back", "partial", "rollback_failed"})


def batch_result(
    batch_id: str, legs: tuple[Leg, ...], status: str, elapsed: float, plan: Plan,
) -> BatchResult:
    """The batch's answer. `succeeded` counts the legs whose fills are still held (a leg
    rolled back is not one), `failed` the legs that did not fill (rejected, cancelled,
    unfilled); `order_ids` are the legs' broker orders in leg order, never reverse orders."""
    exposure = [exposure_of(leg) for leg in legs
                if leg.rollback and leg.rollback["action"] == "failed"]
    return BatchResult(
        status=status,
        batch_id=batch_id,
        total_orders=len(legs),
        succeeded=sum(1 for leg in legs if _held(leg)),
        failed=sum(1 for leg in legs if not leg.complete),
        order_ids=[leg.order_id for leg in legs if leg.order_id],
        legs=[_leg_result(leg) for leg in legs],
        duration_ms=round(elapsed * 1000, 1),
        execution=plan.execution,
        execution_reason=plan.reason,
        exposure=exposure or None,
    )


def _leg_result(leg: Leg) -> LegResult:
    rollback = None if leg.rollback is None else RollbackDetail(**leg.rollback)
    return LegResult(index=leg.index, order_id=leg.order_id, tag=leg.tag, status=leg.status,
                     filled_quantity=leg.filled, average_price=leg.average_price,
                     error=leg.error, rollback=rollback)


def _held(leg: Leg) -> bool:
    """Did the leg fill, and does its fill stay held? It does when no rollback touched it, or
    when its rollback failed leaving exposure (a `remaining` of None: unknown, so held)."""
    if not leg.complete or leg.is_reverse:
        return False
    rollback = leg.rollback
    return rollback is None or (rollback["action"] == "failed" and rollback.get("remaining") != 0)


@attrs.frozen
class Plan:
    """How a batch's legs run: `parallel` or `hedge_first`, and why when not as asked."""

    execution: str = "parallel"
    reason: str | None = None

    @classmethod
    def of_request(cls, request: Any) -> Plan:
        """The plan of a stored batch (its body as run)."""
        if not isinstance(request, dict):
            return cls()
        return cls(str(request.get("execution") or "parallel"), request.get("execution_reason"))


def exposure_of(leg: Leg) -> Exposure:
    """What a leg whose rollback failed leaves: `quantity` is None when it is unknown (an
    order whose outcome is unknown, or that the broker no longer lists, named in
    `unknown_tags`, with `quantity_at_most`); orders still working in `open_order_ids`."""
    rb = leg.rollback or {}
    unknown = rb.get("unknown_tags") or None
    return Exposure(
        index=leg.index, tradingsymbol=leg.request.tradingsymbol,
        exchange=leg.request.exchange, product=leg.request.product,
        transaction_type=leg.request.transaction_type,
        quantity=rb.get("remaining"), open_order_ids=rb.get("open_order_ids", []),
        unknown_tags=unknown, quantity_at_most=rb.get("quantity_at_most") if unknown else None,
    )


def batch_progress(batch: BatchRecord, records: list[LegRecord]) -> BatchProgress:
    legs = [r for r in records if r.kind == "leg"]
    plan = Plan.of_request(batch.request)
    return BatchProgress(
        status=batch.status,
        batch_id=batch.batch_id,
        total_orders=len(legs),
        order_ids=[r.order_id for r in legs if r.order_id],
        legs=[LegProgress(index=r.index, order_id=r.order_id, tag=r.tag, status=r.status,
                          **{k: r.detail.get(k)
                             for k in ("filled_quantity", "average_price", "error")})
              for r in legs],
        duration_ms=round(max(time.time() - batch.created_at, 0.0) * 1000, 1),
        execution=plan.execution,
        execution_reason=plan.reason,
    )


def leg_record(batch_id: str, leg: Leg, written_ahead: bool = False) -> LegRecord:
    """A new leg's row: PENDING, or PLACING when the row is its write-ahead (stored with the
    batch, so sending it needs no write of its own)."""
    return LegRecord(batch_id, leg.index, leg.tag, "PLACING" if written_ahead else "PENDING",
                     None, attrs.asdict(leg.request), {})


def left_behind(legs: tuple[Leg, ...]) -> list[str]:
    """What each leg of a batch cut short leaves for recovery, one phrase a leg (for a log)."""
    parts = []
    for leg in legs:
        part = f"{leg.tag} order {leg.order_id or '-'} {leg.status} filled {leg.filled}"
        if leg.reverse_filled:
            part += f" reversed {leg.reverse_filled}"
        reverse = leg.reverse
        if reverse is not None:
            if reverse.order_id:
                part += (f" reverse order {reverse.order_id} working ({reverse.tag} "
                         f"{reverse.status} filled {reverse.filled})")
            else:
                part += f" reverse {reverse.tag} outcome unknown"
        elif leg.order_id and not leg.is_final:
            part += " (open)"
        elif leg.unknown:
            part += " (outcome unknown)"
        parts.append(part)
    return parts
