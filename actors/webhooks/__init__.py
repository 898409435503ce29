"""Webhooks: the events outbox (`EventRelay`) and its at-least-once, signed delivery
(`WebhookDispatcher`)."""

from .dispatcher import (
    EVENT_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DispatcherStatistics,
    WebhookConfig,
    WebhookDispatcher,
    WebhookEvent,
    sign,
    verify_signature,
)
from .events import (
    BATCH_EVENTS,
    ORDER_UPDATED,
    EventRelay,
    RelayStatistics,
    order_event,
    order_event_id,
)

__all__ = [
    "BATCH_EVENTS",
    "EVENT_HEADER",
    "EVENT_ID_HEADER",
    "ORDER_UPDATED",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "DispatcherStatistics",
    "EventRelay",
    "RelayStatistics",
    "WebhookConfig",
    "WebhookDispatcher",
    "WebhookEvent",
    "order_event",
    "order_event_id",
    "sign",
    "verify_signature",
]
