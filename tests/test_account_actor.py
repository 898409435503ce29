"""The account actor against the paper venue and a real store, without the web front.

Streaming through websockets is tested in test_web*; here: the actor's own contracts (seq after a
restart, auth_expired and new credentials, reconcile after the upstream was down, waiters).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest
import trio

from actors.account import AccountActor, ActorConfig, Subscription
from brokers.base import OrderRequest
from brokers.kite import KiteBroker, KiteSettings
from brokers.paper import VenueAddress
from brokers.paper.config import IST
from store import Store, open_store

FAST = ActorConfig(reconnect_initial_s=0.05, reconnect_max_s=0.2, reconnect_jitter_s=0.01)


@pytest.fixture
async def sqlite_store(sqlite_url: str) -> AsyncIterator[Store]:
    async with open_store(sqlite_url) as store:
        yield store


@pytest.fixture
async def broker(venue: VenueAddress) -> AsyncIterator[KiteBroker]:
    settings = KiteSettings("paper", "paper-primary", venue.rest_url, venue.ticker_url,
                            stall_timeout_s=0.5)
    b = KiteBroker(settings)
    try:
        yield b
    finally:
        await b.aclose()


def market(tag: str | None = None) -> OrderRequest:
    return OrderRequest("NIFTY26DECFUT", "NFO", "BUY", "MARKET", 75, "NRML",
                        market_protection=-1, tag=tag)


async def messages(sub: Subscription) -> AsyncIterator[dict]:
    for text in sub.initial:
        yield json.loads(text)
    async for text in sub.receive:
        yield json.loads(text)


async def until(sub_iter: AsyncIterator[dict], predicate) -> dict:
    async for message in sub_iter:
        if predicate(message):
            return message
    raise AssertionError("subscription ended")


async def start_actor(nursery: trio.Nursery, broker: KiteBroker, store: Store) -> AccountActor:
    actor = AccountActor("primary", broker, store, FAST)
    await nursery.start(actor.run)
    return actor


async def test_updates_are_committed_in_seq_and_seq_survives_restart(
    broker: KiteBroker, sqlite_store: Store
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            actor = await start_actor(nursery, broker, sqlite_store)
            stream = messages(actor.subscribe())
            snapshot = await anext(stream)
            assert snapshot["type"] == "snapshot" and snapshot["seq"] == 0
            await until(stream, lambda m: m.get("upstream") == "connected")
            order_id = await broker.place(market())
            done = await until(stream, lambda m: m.get("order", {}).get("status") == "COMPLETE")
            assert done["order"]["order_id"] == order_id
            last = actor.seq
            assert last == done["seq"] and [e.seq for e in
                                             await sqlite_store.read_events("primary", 0)] == \
                list(range(1, last + 1))
            nursery.cancel_scope.cancel()
        async with trio.open_nursery() as nursery:
            again = await start_actor(nursery, broker, sqlite_store)
            assert again.seq == last
            assert again.order(order_id)["status"] == "COMPLETE"
            resumed = again.subscribe(since=last - 1)
            assert [json.loads(m)["seq"] for m in resumed.initial if '"seq"' in m][:1] == [last]
            nursery.cancel_scope.cancel()


async def test_reconcile_after_upstream_loss_delivers_missed_changes(
    broker: KiteBroker, sqlite_store: Store, control: httpx.AsyncClient
) -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            actor = await start_actor(nursery, broker, sqlite_store)
            stream = messages(actor.subscribe())
            await until(stream, lambda m: m.get("upstream") == "connected")
            await control.post("/_venue/faults", json={"stall_ticker": True})
            await until(stream, lambda m: m.get("upstream") == "reconnecting")
            missed = await broker.place(market())  # its pushes are lost while stalled
            await control.delete("/_venue/faults")
            got = await until(stream, lambda m: m.get("order", {}).get("order_id") == missed)
            assert got["source"] == "reconcile"
            assert got["order"]["status"] == "COMPLETE"
            await until(stream, lambda m: m.get("upstream") == "connected")
            assert actor.upstream.reconnects >= 1
            nursery.cancel_scope.cancel()


async def test_expired_token_parks_the_actor_until_new_credentials(
    broker: KiteBroker, sqlite_store: Store, control: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            actor = await start_actor(nursery, broker, sqlite_store)
            stream = messages(actor.subscribe())
            await until(stream, lambda m: m.get("upstream") == "connected")
            await control.post("/_venue/accounts/primary/expire")
            await until(stream, lambda m: m.get("upstream") == "auth_expired")
            assert actor.status()["upstream"] == "auth_expired"
            issued = await control.post("/_venue/accounts/primary/token")
            actor.set_access_token(issued.json()["data"]["access_token"])
            await until(stream, lambda m: m.get("upstream") == "connected")
            nursery.cancel_scope.cancel()


async def test_watch_by_tag_sees_updates_before_place_returns(
    broker: KiteBroker, sqlite_store: Store
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            actor = await start_actor(nursery, broker, sqlite_store)
            stream = messages(actor.subscribe())
            await until(stream, lambda m: m.get("upstream") == "connected")
            with actor.watch("odwatch1") as updates:
                order_id = await broker.place(market(tag="odwatch1"))
                statuses = []
                async for order in updates:
                    assert order.order_id == order_id
                    statuses.append(order.status)
                    if order.is_final:
                        break
            assert statuses[-1] == "COMPLETE"
            nursery.cancel_scope.cancel()


async def test_failed_reconcile_reconnects_instead_of_crashing(
    venue: VenueAddress, sqlite_store: Store, control: httpx.AsyncClient
) -> None:
    settings = KiteSettings("paper", "paper-primary", venue.rest_url, venue.ticker_url,
                            timeout_s=0.3, stall_timeout_s=2)
    slow = KiteBroker(settings)
    try:
        with trio.fail_after(15):
            await control.post("/_venue/faults", json={"latency_ms": 600})
            async with trio.open_nursery() as nursery:
                actor = AccountActor("primary", slow, sqlite_store, FAST)
                await nursery.start(actor.run)
                stream = messages(actor.subscribe())
                # GET /orders times out during the reconcile: reconnect, not a crash
                await until(stream, lambda m: m.get("upstream") == "reconnecting")
                assert "BrokerUnavailable" in (actor.upstream.last_error or "")
                await control.delete("/_venue/faults")
                await until(stream, lambda m: m.get("upstream") == "connected")
                nursery.cancel_scope.cancel()
    finally:
        await slow.aclose()


async def test_the_book_at_start_holds_the_ist_trading_day_only(
    broker: KiteBroker, sqlite_store: Store
) -> None:
    now = datetime.now(IST)
    today, yesterday = f"{now:%Y-%m-%d}", f"{now - timedelta(days=1):%Y-%m-%d}"

    def stored(order_id: str, **stamps: str | None) -> dict:
        return {"order_id": order_id, "status": "COMPLETE", "tradingsymbol": "NIFTY26DECFUT",
                "exchange": "NFO", "quantity": 75, "filled_quantity": 75, **stamps}

    await sqlite_store.append_events("primary", [
        stored("1", order_timestamp=f"{today} 09:15:00"),
        stored("2", order_timestamp=f"{yesterday} 15:20:00"),
        stored("3", order_timestamp=None),  # no time stated: not provably today's
        stored("4", order_timestamp=None, exchange_update_timestamp=f"{today} 09:16:00"),
    ])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            actor = await start_actor(nursery, broker, sqlite_store)
            snapshot = json.loads(actor.subscribe().initial[0])
            nursery.cancel_scope.cancel()
    assert sorted(o["order_id"] for o in actor.orders()) == ["1", "4"]
    assert sorted(o["order_id"] for o in snapshot["orders"]) == ["1", "4"]
