"""What the coordinator answers for a single order and a cancel, as typed values.

A batch's result, a stored batch's progress and the kill switch's report stay dicts for now
(`_results.py`, `kill.py`); the web front unstructures all of them.
"""

from __future__ import annotations

import attrs

__all__ = ["CancelRequested", "OrderOutcomeUnknown", "OrderPlaced"]


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
class CancelRequested:
    """The broker accepted the cancel; the order's final state arrives on the websocket."""

    order_id: str = attrs.field(metadata={"doc": "the order asked to be cancelled"})
