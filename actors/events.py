"""Relay of domain events (order updates, finished batches) to metrics and webhooks.

Actors report events synchronously and must never wait on a webhook receiver or on the outbox
write; the relay takes each event into a bounded queue and a task of its own writes it to the
durable outbox. A full queue drops the event with an error log (never blocks the actor).
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import trio

from .webhooks import WebhookDispatcher

log = logging.getLogger(__name__)

BATCH_EVENTS = {
    "batch.success": "batch.completed",
    "batch.partial": "batch.completed",
    "batch.rolled_back": "batch.rolled_back",
    "batch.rollback_failed": "batch.rollback_failed",
}


@attrs.frozen
class _Event:
    account: str
    event_type: str
    payload: dict[str, Any]
    event_id: str


class EventRelay:
    def __init__(self, dispatcher: WebhookDispatcher, capacity: int = 10_000) -> None:
        self._dispatcher = dispatcher
        self._send, self._receive = trio.open_memory_channel[_Event](capacity)
        self.dropped = 0

    def order_updated(self, account: str, seq: int, payload: dict[str, Any]) -> None:
        self._offer(_Event(account, "order.updated", {"seq": seq, "order": payload},
                           f"order:{account}:{seq}"))

    def batch_finished(self, event: str, result: dict[str, Any]) -> None:
        webhook_type = BATCH_EVENTS.get(event)
        if webhook_type is None:
            return
        account = str(result.get("account", ""))
        batch_id = str(result.get("batch_id", ""))
        self._offer(_Event(account, webhook_type, result, f"batch:{batch_id}:{webhook_type}"))

    def _offer(self, event: _Event) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1
            log.error("event relay full: dropped %s %s", event.event_type, event.event_id)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for event in self._receive:
            await self._dispatcher.emit(
                event.account, event.event_type, event.payload, event.event_id
            )
