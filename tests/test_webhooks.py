"""The webhook dispatcher against a real HTTP receiver on loopback, on both store engines.

The receiver is a raw trio TCP server speaking HTTP/1.1 through h11: it records every request and
can be told to answer 500 a number of times, to hang until the client gives up, or to answer
500 after it has processed an event (a lost acknowledgement). Tests wait on what it recorded (an
event per request), never on sleeps; timings are real but shrunk through `WebhookConfig`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import pytest
import trio

from actors.settings import WebhookSettings
from actors.webhooks import (
    WebhookConfig,
    WebhookDispatcher,
    sign,
    verify_signature,
)
from store import Store, WebhookDelivery
from tests.fixtures_webhooks import FAST, Receiver

SECRET = "s3cret"


# ---------------------------------------------------------------------------------- receiver


# -------------------------------------------------------------------------------- dispatcher


@attrs.define(eq=False)
class Results:
    """The `on_result` callback, with a way to wait for counts."""

    seen: list[str] = attrs.field(factory=list)
    _changed: trio.Event = attrs.field(factory=trio.Event)

    def __call__(self, result: str) -> None:
        self.seen.append(result)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_count(self, result: str, n: int) -> None:
        while self.seen.count(result) < n:
            await self._changed.wait()


@asynccontextmanager
async def running(dispatcher: WebhookDispatcher) -> AsyncIterator[WebhookDispatcher]:
    """Run the sender for the block, then stop it (a graceful stop, as on shutdown)."""
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher.run)
        yield dispatcher
        nursery.cancel_scope.cancel()


def hooks(receiver: Receiver, *paths: str, secret: str = SECRET) -> tuple[WebhookSettings, ...]:
    return tuple(WebhookSettings(receiver.url(p), secret) for p in paths)


async def pending(store: Store) -> list[WebhookDelivery]:
    """Rows still pending, due or not (leases them: call at the end of a test)."""
    return await store.claim_webhooks(1000, time.time() + 1e9, 0.001)


# ------------------------------------------------------------------------------------- tests


async def test_delivered_webhook_is_signed_and_carries_headers(
    store: Store, receiver: Receiver
) -> None:
    results = Results()
    settings = {"acc": hooks(receiver, "/hook")}
    dispatcher = WebhookDispatcher(store, settings, FAST, on_result=results)
    with trio.fail_after(10):
        async with running(dispatcher):
            payload = {"order_id": "230101000001", "status": "COMPLETE", "seq": 7}
            event_id = await dispatcher.emit("acc", "order.updated", payload, "order:acc:7")
            assert event_id == "order:acc:7"
            await results.wait_count("delivered", 1)
        assert await pending(store) == []

    [got] = receiver.requests
    assert got.status == 200
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-orderdesk-event-id"] == "order:acc:7"
    assert got.headers["x-orderdesk-event"] == "order.updated"
    timestamp = got.headers["x-orderdesk-timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    signature = got.headers["x-orderdesk-signature"]
    assert signature.startswith("sha256=")
    assert verify_signature(SECRET, timestamp, got.body, signature)
    assert verify_signature(SECRET, timestamp, got.body.decode(), signature, tolerance_s=60)
    assert not verify_signature("other", timestamp, got.body, signature)
    assert not verify_signature(SECRET, str(int(timestamp) + 1), got.body, signature)
    assert not verify_signature(SECRET, timestamp, got.body.replace(b"7", b"8"), signature)

    body = json.loads(got.body)
    assert body == {
        "event_id": "order:acc:7",
        "event_type": "order.updated",
        "account": "acc",
        "created_at": body["created_at"],
        "data": payload,
    }
    assert abs(body["created_at"] - time.time()) < 60
    assert results.seen == ["delivered"]


async def test_receiver_failing_twice_gets_three_attempts_then_ack(
    store: Store, receiver: Receiver
) -> None:
    receiver.fail["/flaky"] = 2
    results = Results()
    dispatcher = WebhookDispatcher(
        store, {"acc": hooks(receiver, "/flaky")}, FAST, on_result=results
    )
    with trio.fail_after(10):
        async with running(dispatcher):
            await dispatcher.emit("acc", "batch.completed", {"batch_id": "b1"}, "batch:b1")
            await results.wait_count("delivered", 1)
        assert await pending(store) == []
    assert [r.status for r in receiver.requests] == [500, 500, 200]
    assert {r.event_id for r in receiver.requests} == {"batch:b1"}
    assert len({r.body for r in receiver.requests}) == 1  # the same body on every attempt
    assert results.seen == ["retry", "retry", "delivered"]
    assert dispatcher.statistics().retried == 2


async def test_restart_delivers_what_was_pending(store: Store, receiver: Receiver) -> None:
    receiver.hang.add("/hook")
    settings = {"acc": hooks(receiver, "/hook")}
    slow = attrs.evolve(FAST, timeout_s=30, lease_s=60)  # only a hand-back can free the row in time
    with trio.fail_after(10):
        async with running(WebhookDispatcher(store, settings, slow)) as first:
            await first.emit("acc", "order.updated", {"seq": 1}, "order:acc:1")
            await receiver.wait_for(lambda r: len(r.requests) == 1)  # in flight, hanging
        # Stopped mid-request, and an event emitted while no sender runs.
        await WebhookDispatcher(store, settings, slow).emit(
            "acc", "order.updated", {"seq": 2}, "order:acc:2"
        )
        receiver.hang.clear()
        results = Results()
        async with running(WebhookDispatcher(store, settings, slow, on_result=results)):
            await results.wait_count("delivered", 2)
        assert await pending(store) == []
    delivered = {r.event_id for r in receiver.requests if r.status == 200}
    assert delivered == {"order:acc:1", "order:acc:2"}


async def test_crashed_sender_lease_expires_and_row_is_delivered(
    store: Store, receiver: Receiver
) -> None:
    settings = {"acc": hooks(receiver, "/hook")}
    dispatcher = WebhookDispatcher(store, settings, FAST)
    await dispatcher.emit("acc", "batch.rolled_back", {"batch_id": "b2"}, "batch:b2:rb")
    # A sender that leased the row and died without a word.
    [leased] = await store.claim_webhooks(10, time.time(), lease_s=0.3)
    with trio.fail_after(10):
        results = Results()
        async with running(WebhookDispatcher(store, settings, FAST, on_result=results)):
            await results.wait_count("delivered", 1)
    [got] = receiver.requests
    assert got.event_id == leased.event_id == "batch:b2:rb"


async def test_hanging_receiver_is_retried_while_others_arrive(
    store: Store, receiver: Receiver
) -> None:
    receiver.hang.add("/dead")
    results = Results()
    settings = {"a": hooks(receiver, "/dead", "/live"), "b": hooks(receiver, "/other")}
    config = attrs.evolve(FAST, timeout_s=0.3)
    dispatcher = WebhookDispatcher(store, settings, config, on_result=results)
    with trio.fail_after(10):
        async with running(dispatcher):
            await dispatcher.emit("a", "order.updated", {"seq": 1}, "order:a:1")
            await receiver.wait_for(lambda r: len(r.on("/dead")) == 1)
            # The first /dead attempt is still hanging: the others arrive regardless.
            for seq in range(1, 6):
                await dispatcher.emit("b", "order.updated", {"seq": seq}, f"order:b:{seq}")
            await receiver.wait_for(lambda r: len(r.on("/live")) == 1 and len(r.on("/other")) == 5)
            assert len(receiver.on("/dead")) == 1
            assert dispatcher.statistics().in_flight >= 1
            # The hanging attempt times out and the same event is tried again.
            await receiver.wait_for(lambda r: len(r.on("/dead")) >= 2)
    assert {r.event_id for r in receiver.on("/dead")} == {"order:a:1"}
    assert "retry" in results.seen
    assert results.seen.count("delivered") == 6


async def test_emit_never_waits_on_receivers(store: Store, receiver: Receiver) -> None:
    receiver.hang.add("/dead")
    config = attrs.evolve(FAST, timeout_s=30, lease_s=60, concurrency=1)
    dispatcher = WebhookDispatcher(store, {"a": hooks(receiver, "/dead")}, config)
    with trio.fail_after(10):
        async with running(dispatcher):
            await dispatcher.emit("a", "order.updated", {"seq": 0}, "order:a:0")
            await receiver.wait_for(lambda r: len(r.requests) == 1)
            # Every sending slot is stuck on a receiver for 30 s; emitting still only writes.
            with trio.fail_after(5):
                for seq in range(1, 21):
                    await dispatcher.emit("a", "order.updated", {"seq": seq}, f"order:a:{seq}")
            assert dispatcher.statistics().in_flight == 1
            assert len(receiver.requests) == 1


async def test_past_max_age_the_delivery_fails(
    store: Store, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.fail["/down"] = 1_000_000
    results = Results()
    config = attrs.evolve(FAST, max_age_s=0.3)
    settings = {"acc": hooks(receiver, "/down")}
    dispatcher = WebhookDispatcher(store, settings, config, on_result=results)
    with caplog.at_level(logging.ERROR, logger="actors.webhooks"), trio.fail_after(10):
        async with running(dispatcher):
            await dispatcher.emit("acc", "batch.rollback_failed", {"batch_id": "b3"}, "b3:rf")
            await results.wait_count("failed", 1)
        assert await pending(store) == []
    assert results.seen[-1] == "failed"
    assert results.seen.count("failed") == 1
    assert len(receiver.requests) >= 2
    assert {r.event_id for r in receiver.requests} == {"b3:rf"}
    assert any("b3:rf" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


async def test_account_without_webhooks_writes_nothing(store: Store) -> None:
    dispatcher = WebhookDispatcher(store, {"hooked": ()}, FAST)
    event_id = await dispatcher.emit("nohooks", "order.updated", {"seq": 1})
    assert len(event_id) == 32  # a uuid4 hex when the caller gives none
    await dispatcher.emit("hooked", "order.updated", {"seq": 1}, "order:hooked:1")
    assert await pending(store) == []


async def test_emit_rejects_unknown_types_and_non_json(store: Store, receiver: Receiver) -> None:
    dispatcher = WebhookDispatcher(store, {"acc": hooks(receiver, "/hook")}, FAST)
    with pytest.raises(ValueError, match="unknown webhook event type"):
        await dispatcher.emit("acc", "order.created", {})
    with pytest.raises(TypeError):
        await dispatcher.emit("acc", "order.updated", {"at": object()})
    assert await pending(store) == []


async def test_acknowledging_receiver_sees_each_event_id(store: Store, receiver: Receiver) -> None:
    receiver.lose_ack_every = 3  # it handled the event but the 2xx never made it back
    results = Results()
    settings = {"acc": hooks(receiver, "/hook")}
    dispatcher = WebhookDispatcher(store, settings, FAST, on_result=results)
    expected = {f"order:acc:{seq}" for seq in range(1, 21)}
    with trio.fail_after(15):
        async with running(dispatcher):
            for seq in range(1, 21):
                await dispatcher.emit("acc", "order.updated", {"seq": seq}, f"order:acc:{seq}")
            # The producer re-emits after a crash: same ids, no new deliveries.
            for seq in range(1, 11):
                await dispatcher.emit("acc", "order.updated", {"seq": seq}, f"order:acc:{seq}")
            await results.wait_count("delivered", 20)
        assert await pending(store) == []
    assert receiver.processed == expected
    acked = [r.event_id for r in receiver.requests if r.status == 200]
    assert sorted(acked) == sorted(expected)  # exactly one acknowledged attempt per event
    assert len(receiver.requests) > 20  # lost acks were retried and deduplicated by the receiver


async def test_url_removed_from_configuration_fails_its_rows(
    store: Store, receiver: Receiver
) -> None:
    await WebhookDispatcher(store, {"acc": hooks(receiver, "/old")}, FAST).emit(
        "acc", "order.updated", {"seq": 1}, "order:acc:1"
    )
    results = Results()
    dispatcher = WebhookDispatcher(store, {"acc": hooks(receiver, "/new")}, FAST, on_result=results)
    with trio.fail_after(10):
        async with running(dispatcher):
            await results.wait_count("failed", 1)
    assert receiver.requests == []


def test_config_validation_and_backoff() -> None:
    with pytest.raises(ValueError, match="lease_s"):
        WebhookConfig(timeout_s=10, lease_s=5)
    with pytest.raises(ValueError, match="concurrency"):
        WebhookConfig(concurrency=0)
    config = WebhookConfig(initial_backoff_s=1, max_backoff_s=10, jitter=0.25)
    for attempts, base in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (30, 10)]:
        assert base <= config.backoff(attempts) <= base * 1.25


def test_signature_helpers() -> None:
    body = b'{"a":1}'
    header = sign("k", 1700000000, body)
    assert verify_signature("k", "1700000000", body, header)
    assert not verify_signature("k", "1700000000", body, header, tolerance_s=300)  # stale
    assert not verify_signature("k", "not-a-number", body, header)
    assert not verify_signature("k", "1700000000", body, "sha256=00")
