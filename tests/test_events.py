"""The event relay on both store engines: order.updated reaches the outbox from the store, not
from memory alone.

Committed order events that the relay never wrote (it was down, its queue overflowed, a report
went missing) are read back from `order_events` after the account's webhook cursor; each event id
lands in the outbox once, and a receiver that acknowledges sees each once. Most tests read the
outbox itself (no sender runs); two deliver to the HTTP receiver of tests/test_webhooks.py, one of
them through the whole service across a restart.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from actors.settings import WebhookSettings
from actors.webhooks import EventRelay, WebhookDispatcher, order_event
from store import Store, WebhookDelivery, open_store
from supervision.service import Running
from tests.fixtures_cli import free_port
from tests.fixtures_orders import leg
from tests.fixtures_service import api, open_test_service, venue_control
from tests.fixtures_venue import nifty_symbols
from tests.fixtures_waits import wait_until
from tests.fixtures_webhooks import ENVIRON, FAST, SERVICE_FAST, PortReceiver, Receiver, hooks_for

URL = "https://hook.invalid/a"  # no sender runs where tests read the outbox


def order(i: int) -> dict[str, Any]:
    return {"order_id": f"o{i}", "status": "OPEN", "tag": f"t{i}"}


def dispatcher_for(store: Store, *accounts: str, url: str = URL) -> WebhookDispatcher:
    return WebhookDispatcher(store, {a: (WebhookSettings(url, "s3cret"),) for a in accounts}, FAST)


@asynccontextmanager
async def relaying(relay: EventRelay) -> AsyncIterator[EventRelay]:
    """Run the relay for the block, then stop it as a shutdown or crash would."""
    async with trio.open_nursery() as nursery:
        await nursery.start(relay.run)
        yield relay
        nursery.cancel_scope.cancel()


async def commit(
    store: Store, account: str, first: int, n: int, relay: EventRelay | None = None
) -> list[int]:
    """Append n order events as the actor does, reporting them to `relay` (None: unreported)."""
    orders = [order(i) for i in range(first, first + n)]
    seqs = await store.append_events(account, orders)
    if relay is not None:
        for seq, payload in zip(seqs, orders, strict=True):
            relay.order_updated(account, seq, payload)
    return seqs


#: Polls the store, where no event tells of a change.
until = functools.partial(wait_until, poll_s=0.005)


def cursor_at(store: Store, account: str, seq: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await store.webhook_cursor(account) >= seq

    return check


async def outbox(store: Store) -> list[WebhookDelivery]:
    """Every pending row (leases them: call once, at the end of a test)."""
    return await store.claim_webhooks(10_000, 4e9, 0.001)


def order_ids(account: str, seqs: Sequence[int]) -> collections.Counter[str]:
    return collections.Counter(f"order:{account}:{s}" for s in seqs)


class CountingStore:
    """The store, with a record of each `enqueue_webhooks` call (its number of rows)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.enqueued: list[int] = []

    async def enqueue_webhooks(
        self, deliveries: Sequence[WebhookDelivery], cursors: dict[str, int] | None = None
    ) -> int:
        self.enqueued.append(len(deliveries))
        return await self._store.enqueue_webhooks(deliveries, cursors)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


# ------------------------------------------------------------------------ against the outbox


async def test_events_committed_while_the_relay_was_down_are_enqueued_at_restart(
    store: Store,
) -> None:
    dispatcher = dispatcher_for(store, "acc")
    with trio.fail_after(20):
        first = EventRelay(dispatcher, store)
        async with relaying(first):
            await commit(store, "acc", 1, 3, first)
            await commit(store, "quiet", 1, 2, first)  # no webhooks: nothing stored for it
            await until(cursor_at(store, "acc", 3))
        await commit(store, "acc", 4, 2)  # committed while no relay ran
        await commit(store, "acc", 6, 2, first)  # heard only by the stopped relay's memory
        # the process restarts: a new relay with empty queues, the store as it was
        second = EventRelay(dispatcher_for(store, "acc"), store)
        async with relaying(second):
            await until(cursor_at(store, "acc", 7))
            # The cursor is in the store a moment before the relay counts what it read back
            # (it resumes after the write): wait for the count too, then check it exactly.
            await until(lambda: second.statistics().caught_up >= 4)
            assert second.statistics().caught_up == 4
            await commit(store, "acc", 8, 1, second)  # and then it follows live reports
            await until(cursor_at(store, "acc", 8))
        rows = await outbox(store)
    assert collections.Counter(r.event_id for r in rows) == order_ids("acc", range(1, 9))
    read_back = next(r for r in rows if r.event_id == "order:acc:5")
    live = next(r for r in rows if r.event_id == "order:acc:2")
    assert read_back.payload["data"] == {"seq": 5, "order": order(5)}  # same shape as live
    assert live.payload["data"] == {"seq": 2, "order": order(2)}
    assert {r.event_type for r in rows} == {"order.updated"}
    assert await store.webhook_cursor("quiet") == 0


async def test_webhooks_start_when_configured_not_with_the_accounts_history(store: Store) -> None:
    with trio.fail_after(20):
        await commit(store, "acc", 1, 5)  # before the account had webhooks
        relay = EventRelay(dispatcher_for(store, "acc"), store)
        async with relaying(relay):
            await commit(store, "acc", 6, 2, relay)
            await until(cursor_at(store, "acc", 7))
        rows = await outbox(store)
    assert collections.Counter(r.event_id for r in rows) == order_ids("acc", [6, 7])


async def test_a_full_queue_catches_up_from_the_store_without_loss(store: Store) -> None:
    dispatcher = dispatcher_for(store, "acc", "other")
    relay = EventRelay(dispatcher, store, capacity=4, batch_size=5)
    with trio.fail_after(20):
        async with relaying(relay):
            await until(cursor_at(store, "acc", 0))
            await commit(store, "acc", 1, 40, relay)  # 40 reports at once into room for 4
            await commit(store, "other", 1, 3, relay)
            relay.batch_finished("batch.success", {"account": "acc", "batch_id": "b1"})
            relay.batch_finished("batch.success", {"account": "quiet", "batch_id": "b2"})
            await commit(store, "acc", 41, 2, relay)
            await until(cursor_at(store, "acc", 42))
            await until(cursor_at(store, "other", 3))
            stats = relay.statistics()
            assert stats.overflowed > 0 and stats.caught_up > 0 and stats.dropped == 0
        rows = await outbox(store)
    expected = order_ids("acc", range(1, 43)) + order_ids("other", [1, 2, 3])
    expected["batch:b1:batch.completed"] = 1
    assert collections.Counter(r.event_id for r in rows) == expected


async def test_an_unreported_seq_is_read_back_from_the_store(store: Store) -> None:
    relay = EventRelay(dispatcher_for(store, "acc"), store)
    with trio.fail_after(20):
        async with relaying(relay):
            await commit(store, "acc", 1, 2, relay)
            await commit(store, "acc", 3, 1)  # committed, but the report never came
            await commit(store, "acc", 4, 1, relay)
            await until(cursor_at(store, "acc", 4))
            await commit(store, "acc", 5, 1, relay)
            await until(cursor_at(store, "acc", 5))
        rows = await outbox(store)
    assert collections.Counter(r.event_id for r in rows) == order_ids("acc", range(1, 6))


async def test_the_queue_drains_in_batches_one_store_write_each(store: Store) -> None:
    counting = CountingStore(store)
    dispatcher = dispatcher_for(counting, "acc", "b")  # type: ignore[arg-type]
    relay = EventRelay(dispatcher, counting, batch_size=50)  # type: ignore[arg-type]
    with trio.fail_after(20):
        async with relaying(relay):
            await commit(store, "acc", 1, 1, relay)
            await until(cursor_at(store, "acc", 1))

            async def caught_up_with_nothing_queued() -> bool:  # the start-up catch-up is over
                stats = relay.statistics()
                return stats.behind == 0 and stats.queued_orders == 0

            await until(caught_up_with_nothing_queued)
            counting.enqueued.clear()
            caught_up = relay.statistics().caught_up
            await commit(store, "acc", 2, 100, relay)  # reported before the relay runs again
            await commit(store, "b", 1, 20, relay)
            await until(cursor_at(store, "b", 20))
            await until(cursor_at(store, "acc", 101))
    assert counting.enqueued == [50, 50, 20]
    assert relay.statistics().caught_up == caught_up  # all of it live, none read back


async def test_emit_many_writes_events_and_cursors_together(store: Store) -> None:
    dispatcher = dispatcher_for(store, "acc")
    with trio.fail_after(10):
        events = [order_event("acc", s, order(s)) for s in (1, 2)]
        events.append(order_event("quiet", 1, order(1)))  # no webhooks: left out
        assert await dispatcher.emit_many(events, cursors={"acc": 2, "quiet": 1}) == 2
        assert await dispatcher.emit_many(events, cursors={"acc": 2}) == 0  # dedupe by id
        assert await dispatcher.emit("acc", "batch.completed", {"x": 1}, "batch:x") == "batch:x"
        with pytest.raises(ValueError):  # nothing of a batch with a bad event is written
            await dispatcher.emit_many(
                [order_event("acc", 3, order(3)), attrs.evolve(events[0], event_type="nope")],
                cursors={"acc": 3},
            )
        assert (await store.webhook_cursor("acc"), await store.webhook_cursor("quiet")) == (2, 0)
        rows = await outbox(store)
    assert sorted(r.event_id for r in rows) == ["batch:x", "order:acc:1", "order:acc:2"]


# ---------------------------------------------------------------------- to a real receiver


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> Receiver:
    r = Receiver()
    await nursery.start(r.serve)
    return r


def acknowledged(receiver: Receiver) -> collections.Counter[str]:
    return collections.Counter(r.event_id for r in receiver.requests if r.status == 200)


async def test_overflow_and_restart_deliver_each_event_id_once(
    store: Store, receiver: Receiver
) -> None:
    url = receiver.url("/hook")
    dispatcher = dispatcher_for(store, "acc", url=url)
    expected = order_ids("acc", range(1, 41))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(dispatcher.run)
            first = EventRelay(dispatcher, store, capacity=3, batch_size=4)
            async with relaying(first):
                await commit(store, "acc", 1, 30, first)
                await until(cursor_at(store, "acc", 30))
            await commit(store, "acc", 31, 10)  # while the relay is down
            second = EventRelay(dispatcher, store, capacity=3, batch_size=4)
            async with relaying(second):
                await receiver.wait_for(lambda r: set(acknowledged(r)) >= set(expected))
            nursery.cancel_scope.cancel()
    assert acknowledged(receiver) == expected  # every event id, each once
    assert len(receiver.requests) == 40


async def test_through_the_service_a_restart_delivers_what_was_never_enqueued(
    tmp_path: Path,
) -> None:
    """Orders through the service reach the receiver; events committed while the service was
    down (a crash between commit and outbox) reach it after the restart; each id once."""
    receiver = PortReceiver(port=free_port())
    options = dict(account_toml=hooks_for(receiver), environ=ENVIRON, webhook_config=SERVICE_FAST)
    database = f"sqlite:///{tmp_path}/od.db"
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            await nursery.start(receiver.serve)
            async with open_test_service(tmp_path, **options) as running:
                async with api(running) as http, venue_control(running) as venue:
                    fut, _ = await nifty_symbols(venue)
                    done = await http.post("/accounts/primary/batch-orders",
                                           json={"orders": [leg(fut)]})
                    assert done.status_code == 200 and done.json()["status"] == "success"
                await _all_delivered(running, receiver)
            async with open_store(database) as store:  # the crash: committed, never relayed
                lost = await commit(store, "primary", 900, 3)
                await commit(store, "secondary", 900, 2)  # no webhooks there
            earlier = acknowledged(receiver).total()
            async with open_test_service(tmp_path, **options) as running:
                await _all_delivered(running, receiver, earlier)
                assert await running.store.webhook_cursor("secondary") == 0
            nursery.cancel_scope.cancel()
    got = acknowledged(receiver)
    assert set(order_ids("primary", lost)) <= set(got)
    assert all(n == 1 for n in got.values()), "an acknowledged event was delivered again"
    assert all(r.path == "/hook" for r in receiver.requests)
    assert not any(":secondary:" in r.event_id for r in receiver.requests)


async def _all_delivered(running: Running, receiver: Receiver, earlier: int = 0) -> None:
    """Every order event of primary so far is relayed, acknowledged and acked in the store
    (`earlier`: acknowledgements the receiver gave a previous service)."""
    store = running.store

    async def relayed() -> bool:
        return await store.webhook_cursor("primary") >= await store.last_seq("primary")

    await until(relayed)
    wanted = set(order_ids("primary", range(1, await store.last_seq("primary") + 1)))
    await receiver.wait_for(lambda r: set(acknowledged(r)) >= wanted)

    async def settled() -> bool:  # the store has each acknowledgement: no re-send at shutdown
        stats = running.webhooks.statistics()
        return stats.in_flight == 0 and stats.delivered + earlier >= acknowledged(receiver).total()

    await until(settled)
