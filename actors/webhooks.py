"""Webhook dispatcher: signed JSON POSTs to each account's URLs through the store's outbox.

`emit()` only writes outbox rows (one per configured URL) and wakes the sender, so the account actor
and the batch coordinator never wait on a receiver; `emit_many()` writes a whole batch of events
(and, in the same transaction, how far each account's order events now are in the outbox: the
webhook cursor `actors/events.py` catches up from) with one store call. `run()` is the sender:
it leases due rows, POSTs them with bounded concurrency and acks, reschedules (exponential backoff
with jitter) or, past `max_age_s`, fails each one. Rows live in the store, so a restart loses
nothing: a stopped sender hands its in-flight rows back, and a crashed one's leases simply expire.

Delivery is at least once and, per account and URL, in order: the store hands out only the oldest
pending row of each (account, URL), so an event is posted only once every earlier one of its
account to that URL was acknowledged or given up (past `max_age_s`); a failing receiver holds
back only its own account's later events, other accounts and URLs go on concurrently. The relay
(`actors/events.py`) writes an account's events in seq order, and every body carries `seq`.
Receivers deduplicate on `X-Orderdesk-Event-Id` and check `X-Orderdesk-Signature` with
`verify_signature()`.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import httpx
import trio

from actors.settings import WebhookSettings
from store import Store, StoreError, WebhookDelivery

log = logging.getLogger(__name__)

EVENT_TYPES: frozenset[str] = frozenset(
    {"order.updated", "batch.completed", "batch.rolled_back", "batch.rollback_failed"}
)

SIGNATURE_HEADER = "X-Orderdesk-Signature"
TIMESTAMP_HEADER = "X-Orderdesk-Timestamp"
EVENT_ID_HEADER = "X-Orderdesk-Event-Id"
EVENT_HEADER = "X-Orderdesk-Event"

#: How long a stopping sender may spend handing its leased rows back to the store.
_RELEASE_TIMEOUT_S = 2.0

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, not {value!r}")


@attrs.frozen
class WebhookConfig:
    """Timings and bounds of the sender; tests shrink them to milliseconds."""

    timeout_s: float = attrs.field(default=5.0, validator=_positive)
    initial_backoff_s: float = attrs.field(default=1.0, validator=_positive)
    max_backoff_s: float = attrs.field(default=300.0, validator=_positive)
    max_age_s: float = attrs.field(default=86_400.0, validator=_positive)
    poll_interval_s: float = attrs.field(default=1.0, validator=_positive)
    concurrency: int = attrs.field(default=4, validator=_positive)
    lease_s: float = attrs.field(default=30.0, validator=_positive)
    jitter: float = 0.25  # each backoff is stretched by up to this fraction

    def __attrs_post_init__(self) -> None:
        # A lease shorter than a request would let a second sender post the same row meanwhile.
        if self.lease_s <= self.timeout_s:
            raise ValueError(f"lease_s ({self.lease_s}) must exceed timeout_s ({self.timeout_s})")

    def backoff(self, attempts: int) -> float:
        """Delay before attempt `attempts + 1`: exponential from the first failure, capped."""
        base = min(self.max_backoff_s, self.initial_backoff_s * 2 ** max(attempts - 1, 0))
        return base * (1 + random.random() * self.jitter)


@attrs.frozen
class WebhookEvent:
    """One event for `emit_many()`; `event_id` is stable across re-emits (receivers dedupe).

    `seq`: the account's order-event seq it belongs after (an order event's own seq; a batch
    event's is that of its legs' last update), sent in the body so receivers can order events."""

    account: str
    event_type: str
    payload: dict[str, Any]
    event_id: str = attrs.field(factory=lambda: uuid.uuid4().hex)
    seq: int | None = None


@attrs.frozen
class DispatcherStatistics:
    """Counters since start, trio-style (`statistics()`), for health and debugging."""

    in_flight: int
    delivered: int
    retried: int
    failed: int


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The `X-Orderdesk-Signature` value: HMAC-SHA256 over `"{timestamp}.{body}"`."""
    message = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str,
    timestamp: int | str,
    body: bytes | str,
    header: str,
    *,
    tolerance_s: float | None = None,
) -> bool:
    """Check a received webhook (constant time); `tolerance_s` also rejects stale timestamps."""
    if isinstance(body, str):
        body = body.encode()
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if tolerance_s is not None and abs(time.time() - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, str(timestamp), body), header)


class WebhookDispatcher:
    """Owns the outbox sender; `emit()` may be called from any task, before or during `run()`."""

    def __init__(
        self,
        store: Store,
        settings_by_account: Mapping[str, Iterable[WebhookSettings]],
        config: WebhookConfig = WebhookConfig(),
        *,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._on_result = on_result
        self._hooks: dict[str, tuple[WebhookSettings, ...]] = {}
        for account, hooks in settings_by_account.items():
            self.configure(account, hooks)
        self._wake = trio.Event()
        self._retries_due: list[float] = []  # heap of retry times this sender set (wall clock)
        self._slots = trio.Semaphore(config.concurrency)
        self._delivered = self._retried = self._failed = 0

    def configure(self, account: str, hooks: Iterable[WebhookSettings]) -> None:
        """Set an account's webhook URLs (accounts can be added at run time)."""
        hooks = tuple(hooks)
        for hook in hooks:
            if not hook.secret:
                log.warning("webhook %s of account %s has no secret: unsigned", hook.url, account)
        self._hooks[account] = hooks

    def has_webhooks(self, account: str) -> bool:
        """Whether `account` has any webhook URL (events of the others are never stored)."""
        return bool(self._hooks.get(account))

    def accounts_with_webhooks(self) -> list[str]:
        return [account for account, hooks in self._hooks.items() if hooks]

    def statistics(self) -> DispatcherStatistics:
        return DispatcherStatistics(
            in_flight=self._config.concurrency - self._slots.value,
            delivered=self._delivered,
            retried=self._retried,
            failed=self._failed,
        )

    # ---------------------------------------------------------------------------- emitting

    async def emit(
        self,
        account: str,
        event_type: str,
        payload: dict[str, Any],
        event_id: str | None = None,
    ) -> str:
        """Write the event to the outbox (durable on return) and return its event_id.

        Never talks to a receiver. Emitting an event_id again is a no-op per URL, so callers pass
        deterministic ids (`order:<account>:<seq>`) and may re-emit after a crash.
        """
        event = WebhookEvent(account, event_type, payload, event_id or uuid.uuid4().hex)
        await self.emit_many([event])
        return event.event_id

    async def emit_many(
        self, events: Iterable[WebhookEvent], *, cursors: Mapping[str, int] | None = None
    ) -> int:
        """Write every event to the outbox with one store call (durable on return).

        `cursors` (account -> seq: every order event of the account up to seq is now in the
        outbox) is stored in the same transaction; accounts without webhooks are left out, as
        are their events. Returns the outbox rows added (re-emitted events add none).
        """
        events = list(events)
        for event in events:  # nothing is written when any event is bad
            if event.event_type not in EVENT_TYPES:
                raise ValueError(f"unknown webhook event type {event.event_type!r}")
        created_at = round(time.time(), 3)
        deliveries = []
        for event in events:
            hooks = self._hooks.get(event.account, ())
            if not hooks:
                continue
            # The envelope is stored, not rebuilt per attempt: every attempt sends the same body
            # and created_at is what max_age_s counts from.
            stored: dict[str, Any] = {"created_at": created_at, "data": event.payload}
            if event.seq is not None:
                stored["seq"] = event.seq
            _dumps(stored)  # a payload that is not JSON fails here, in the caller, not the sender
            deliveries.extend(
                WebhookDelivery(event.event_id, event.account, hook.url, event.event_type, stored)
                for hook in hooks
            )
        kept = {a: seq for a, seq in (cursors or {}).items() if self.has_webhooks(a)}
        if not deliveries and not kept:
            return 0
        added = await self._store.enqueue_webhooks(deliveries, kept or None)
        if added:
            self._wake.set()
        return added

    # ---------------------------------------------------------------------------- sending

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send due deliveries until cancelled; store errors propagate to the supervisor."""
        # Per run, so a crashed run's slots and connections never leak into the restarted one.
        self._slots = trio.Semaphore(self._config.concurrency)
        limits = httpx.Limits(max_connections=self._config.concurrency)
        async with (
            httpx.AsyncClient(timeout=self._config.timeout_s, limits=limits) as client,
            trio.open_nursery() as nursery,
        ):
            task_status.started()
            while True:
                await self._slots.acquire()  # wait for a free slot before leasing anything
                wake = self._wake = trio.Event()
                free = self._slots.value + 1
                due = await self._store.claim_webhooks(free, time.time(), self._config.lease_s,
                                                       in_order=True)
                if not due:
                    self._slots.release()
                for i, delivery in enumerate(due):
                    if i:
                        self._slots.acquire_nowait()  # free > i: only this loop acquires
                    nursery.start_soon(self._deliver, client, delivery)
                if len(due) < free:
                    await self._idle(wake)

    async def _idle(self, wake: trio.Event) -> None:
        """Sleep until an emit, the next retry this sender scheduled, or the poll interval."""
        now = time.time()
        while self._retries_due and self._retries_due[0] <= now:
            heapq.heappop(self._retries_due)
        timeout = self._config.poll_interval_s
        if self._retries_due:
            timeout = min(timeout, self._retries_due[0] - now)
        with trio.move_on_after(timeout):
            await wake.wait()

    async def _deliver(self, client: httpx.AsyncClient, delivery: WebhookDelivery) -> None:
        """One attempt at one row; the row ends acked, rescheduled, failed or handed back."""
        settled = False
        try:
            error = await self._post(client, delivery)
            await self._settle(delivery, error)
            settled = True
        finally:
            self._slots.release()
            if not settled:
                await self._hand_back(delivery)
            self._wake.set()  # the next row of its (account, URL) may be claimed now

    async def _post(self, client: httpx.AsyncClient, delivery: WebhookDelivery) -> str | None:
        """POST once; None when the receiver acknowledged (2xx), else why not."""
        hook = self._hook(delivery)
        if hook is None:
            return "url no longer configured for the account"
        body = _body(delivery)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: delivery.event_id,
            EVENT_HEADER: delivery.event_type,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(hook.secret, timestamp, body),
        }
        # httpx's timeout is per read/write; the scope bounds the whole exchange (slow drip too).
        with trio.move_on_after(self._config.timeout_s):
            try:
                response = await client.post(delivery.url, content=body, headers=headers)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                return f"{type(exc).__name__}: {exc}"
            if response.is_success:
                return None
            return f"HTTP {response.status_code}"
        return f"timeout after {self._config.timeout_s}s"

    async def _settle(self, delivery: WebhookDelivery, error: str | None) -> None:
        assert delivery.id is not None
        if error is None:
            await self._store.ack_webhook(delivery.id)
            self._delivered += 1
            self._report("delivered")
            return
        now = time.time()
        next_attempt_at = now + self._config.backoff(delivery.attempts)
        created_at = _created_at(delivery)
        if self._hook(delivery) is None or next_attempt_at > created_at + self._config.max_age_s:
            await self._store.fail_webhook(delivery.id, error)
            self._failed += 1
            log.error(
                "webhook %s %s to %s failed for good after %d attempts (%.0fs): %s",
                delivery.event_type,
                delivery.event_id,
                delivery.url,
                delivery.attempts,
                now - created_at,
                error,
            )
            self._report("failed")
            return
        await self._store.retry_webhook(delivery.id, next_attempt_at, error)
        heapq.heappush(self._retries_due, next_attempt_at)
        self._retried += 1
        log.warning(
            "webhook %s to %s: attempt %d: %s; retry in %.2fs",
            delivery.event_id,
            delivery.url,
            delivery.attempts,
            error,
            next_attempt_at - now,
        )
        self._report("retry")

    async def _hand_back(self, delivery: WebhookDelivery) -> None:
        """Release a row this sender was stopped on, so the next one need not wait out the lease."""
        assert delivery.id is not None
        with trio.CancelScope(shield=True), trio.move_on_after(_RELEASE_TIMEOUT_S):
            try:
                await self._store.retry_webhook(delivery.id, time.time(), "sender stopped")
            except StoreError as exc:  # the lease still expires; nothing is lost
                log.warning("webhook %s not handed back: %s", delivery.event_id, exc)

    def _hook(self, delivery: WebhookDelivery) -> WebhookSettings | None:
        hooks = self._hooks.get(delivery.account, ())
        return next((h for h in hooks if h.url == delivery.url), None)

    def _report(self, result: str) -> None:
        if self._on_result is not None:
            self._on_result(result)


def _created_at(delivery: WebhookDelivery) -> float:
    """When the event was emitted; a row not written by `emit()` counts as ancient."""
    value = delivery.payload.get("created_at")
    return float(value) if isinstance(value, int | float) else 0.0


def _body(delivery: WebhookDelivery) -> bytes:
    """The JSON body; the same bytes on every attempt of a delivery."""
    body = {
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "account": delivery.account,
        "created_at": _created_at(delivery),
        "data": delivery.payload.get("data"),
    }
    if "seq" in delivery.payload:  # every event of the relay has one
        body["seq"] = delivery.payload["seq"]
    return _dumps(body).encode()
