"""Relay of domain events (order updates, finished batches) to the webhook outbox.

Actors report events synchronously and never wait on a webhook receiver or on the outbox write:
the relay keeps them in bounded in-memory queues and its own task writes them to the durable
outbox in batches (one store call per batch, `WebhookDispatcher.emit_many`).

`order.updated` does not depend on that memory. Every order event is committed to the store
(`order_events`) before the relay hears of it, and each account with webhooks has a cursor in the
store: the seq up to which all of its order events have their outbox rows, moved forward in the
same transaction as those rows, and only over a gap-free run of seqs. So whatever memory loses is
read back from the store: at start (`run`) every account with webhooks catches up from its cursor
(events committed while the relay was down, or lost with a crash); when the order queue is full
the event is not queued, its account is marked behind and caught up from the store instead; and a
gap in the seqs the relay hears (an update committed but never reported) does the same. Event ids
are `order:<account>:<seq>`, so an event enqueued twice is stored (and delivered) once.

An account without webhooks costs nothing here: its events are neither queued nor read back, and it
has no cursor. Batch events (`batch.*`) come from the batch coordinator's stored result and have no
cursor: a full batch queue drops them with an error log (a batch is far rarer than its orders).

Order: an account's order events reach the outbox in seq order (the cursor only moves one seq at a
time), and a batch event is stamped with the account's seq when it finished (`seq_of`: the
coordinator hears of an update only once it is committed, so that covers its legs' final
updates) and held back until the account's cursor has reached it: its outbox row comes after
theirs, and the dispatcher delivers each account's rows in outbox order.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Any

import attrs
import trio

from store import Store

from .dispatcher import WebhookDispatcher, WebhookEvent

log = logging.getLogger("actors.events")  # its name before the move

BATCH_EVENTS = {
    "batch.success": "batch.completed",
    "batch.partial": "batch.completed",
    "batch.rolled_back": "batch.rolled_back",
    "batch.rollback_failed": "batch.rollback_failed",
}

ORDER_UPDATED = "order.updated"


def order_event_id(account: str, seq: int) -> str:
    return f"order:{account}:{seq}"


def order_event(account: str, seq: int, payload: dict[str, Any]) -> WebhookEvent:
    """The `order.updated` webhook of one committed order event (live or read back)."""
    return WebhookEvent(account, ORDER_UPDATED, {"seq": seq, "order": payload},
                        order_event_id(account, seq), seq=seq)


@attrs.frozen
class _Update:
    account: str
    seq: int
    payload: dict[str, Any]


@attrs.frozen
class RelayStatistics:
    """Counters since start, trio-style (`statistics()`), for health and debugging."""

    queued_orders: int
    queued_batches: int
    behind: int  # accounts waiting to catch up from the store
    overflowed: int  # order events not queued (read back from the store instead)
    caught_up: int  # order events read back from the store
    dropped: int  # batch events dropped (queue full)


class EventRelay:
    """Feeds the outbox; the hooks (`order_updated`, `batch_finished`) may be called any time."""

    def __init__(
        self,
        dispatcher: WebhookDispatcher,
        store: Store,
        capacity: int = 10_000,
        *,
        batch_size: int = 500,
        seq_of: Callable[[str], int] = lambda account: 0,
    ) -> None:
        """`seq_of(account)`: the account's last committed seq (its actor's), which stamps
        batch events (default 0: they are not held back)."""
        if capacity < 1 or batch_size < 1:
            raise ValueError("capacity and batch_size must be >= 1")
        self._dispatcher = dispatcher
        self._store = store
        self._capacity = capacity
        self._batch_size = batch_size
        self._seq_of = seq_of
        self._orders: deque[_Update] = deque()
        self._batches: deque[WebhookEvent] = deque()
        self._behind: set[str] = set()  # accounts to catch up from their cursor
        self._cursors: dict[str, int] = {}  # account -> its cursor as stored (valid per run)
        self._wake = trio.Event()
        self.overflowed = 0
        self.caught_up = 0
        self.dropped = 0

    # ------------------------------------------------------------------- hooks (synchronous)

    def order_updated(self, account: str, seq: int, payload: dict[str, Any]) -> None:
        """An order event of `account` was committed with `seq`."""
        if not self._dispatcher.has_webhooks(account):
            return
        if account in self._behind:
            pass  # its catch-up reads this event from the store
        elif len(self._orders) < self._capacity:
            self._orders.append(_Update(account, seq, payload))
        else:
            self.overflowed += 1
            self._behind.add(account)
            log.warning("event relay full: %s catches up from the store", account)
        self._wake.set()

    def batch_finished(self, event: str, result: dict[str, Any]) -> None:
        webhook_type = BATCH_EVENTS.get(event)
        if webhook_type is None:
            return
        account = str(result.get("account", ""))
        if not self._dispatcher.has_webhooks(account):
            return
        batch_id = str(result.get("batch_id", ""))
        event_id = f"batch:{batch_id}:{webhook_type}"
        if len(self._batches) >= self._capacity:
            self.dropped += 1
            log.error("event relay full: dropped %s %s", webhook_type, event_id)
            return
        self._batches.append(
            WebhookEvent(account, webhook_type, result, event_id, seq=self._seq_of(account)))
        self._wake.set()

    def statistics(self) -> RelayStatistics:
        return RelayStatistics(
            queued_orders=len(self._orders),
            queued_batches=len(self._batches),
            behind=len(self._behind),
            overflowed=self.overflowed,
            caught_up=self.caught_up,
            dropped=self.dropped,
        )

    # ------------------------------------------------------------------------------ the task

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Catch every account with webhooks up from its cursor, then follow the queues.

        Store errors propagate to the supervisor; the next run starts again from the cursors,
        so nothing committed is lost. An account's cursor is created (at its last seq) before
        `task_status.started()`, so its webhooks begin before its actor commits anything.
        """
        self._cursors = {}
        for account in self._dispatcher.accounts_with_webhooks():
            self._cursors[account] = await self._store.start_webhook_cursor(account)
            self._behind.add(account)
        task_status.started()
        while True:
            self._wake = trio.Event()
            for account in list(self._behind):
                await trio.lowlevel.checkpoint()
                self._behind.discard(account)
                if await self._catch_up(account):
                    self._behind.add(account)  # one page each in turn: no account starves
            if self._orders or self._ready_batches():
                await self._flush()
            elif not self._behind:
                await self._wake.wait()

    async def _catch_up(self, account: str) -> bool:
        """Enqueue the next page of `account`'s events after its cursor; True if more follow."""
        cursor = self._cursors[account]
        stored = await self._store.read_events(account, cursor, self._batch_size)
        if not stored:
            return False
        last = stored[-1].seq
        await self._dispatcher.emit_many(
            [order_event(account, e.seq, e.payload) for e in stored], cursors={account: last}
        )
        self._cursors[account] = last  # read_events returns only seqs after the cursor
        self.caught_up += len(stored)
        return len(stored) == self._batch_size

    def _ready_batches(self, cursors: dict[str, int] | None = None) -> list[WebhookEvent]:
        """Queued batch events whose account's order events are in the outbox up to their seq
        (with `cursors` as they will be after this flush), oldest first."""
        cursors = cursors or {}
        ready = [e for e in self._batches
                 if (e.seq or 0) <= cursors.get(e.account, self._cursors.get(e.account, 0))]
        return ready[:self._batch_size]

    async def _flush(self) -> None:
        """Write the oldest queued events with one store call; dequeue them once it is durable.

        An order event extends its account's cursor only if it is the next seq: one at or below
        the cursor is already in the outbox, and one past a gap sends its account to catch up.
        Batch events go after the order events, once their seq is covered (`_ready_batches`).
        """
        updates = list(islice(self._orders, self._batch_size))
        events: list[WebhookEvent] = []
        cursors: dict[str, int] = {}
        for update in updates:  # only accounts with webhooks are queued: each has a cursor
            account = update.account
            cursor = cursors.get(account, self._cursors[account])
            if account in self._behind or update.seq <= cursor:
                continue  # read back by its catch-up, or already in the outbox
            if update.seq != cursor + 1:
                self._behind.add(account)  # committed events we never heard of: read them back
                continue
            events.append(order_event(account, update.seq, update.payload))
            cursors[account] = update.seq
        batches = self._ready_batches(cursors)
        # Each batch event right after its seq's order event: an order event committed after
        # the batch was stamped (a later batch's leg, placed once this one had answered) was
        # maybe queued before this batch event, and goes after it all the same.
        events = sorted([*events, *batches],
                        key=lambda e: (e.seq or 0, e.event_type != ORDER_UPDATED))
        if events or cursors:
            await self._dispatcher.emit_many(events, cursors=cursors)
        self._cursors.update(cursors)  # each only moved forward, one seq at a time
        for _ in updates:
            self._orders.popleft()
        written = {id(event) for event in batches}  # others may have been queued meanwhile
        self._batches = deque(e for e in self._batches if id(e) not in written)
