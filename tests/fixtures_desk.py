"""One in-process desk for the actor-level tests: a store, a connected AccountActor and a running
BatchCoordinator on the paper venue, with the venue's own views (`Desk`), and what a crash left
behind for the recovery tests. Registered in conftest, so `desk` is a fixture everywhere."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import pytest
import trio

from actors.account import AccountActor, ActorConfig
from actors.orders import BatchConfig, BatchCoordinator, new_batch_id, tag_for
from actors.requests import BatchRequest, body_hash
from brokers.base import OrderRequest
from brokers.kite import KiteBroker, KiteSettings
from brokers.paper import VenueAddress
from store import BatchRecord, LegRecord, Store, open_store
from tests.fixtures_orders import leg
from tests.fixtures_venue import NIFTY_FUT, kite_http, market_form
from tests.fixtures_web import replied, typed

FAST_ACTOR = ActorConfig(reconnect_initial_s=0.05, reconnect_max_s=0.2, reconnect_jitter_s=0.01)


FAST = BatchConfig(
    place_timeout_s=2.0, lookup_timeout_s=3.0, poll_interval_s=0.2, deadline_check_s=0.1,
    rollback_timeout_s=5.0, cleanup_grace_s=0.5, session=None,
)


@attrs.define
class Desk:
    """Everything a batch test touches: the coordinator, its actor, and the venue's views."""

    coordinator: BatchCoordinator
    actor: AccountActor
    store: Store
    kite: httpx.AsyncClient  # the venue's Kite API as account "primary"
    control: httpx.AsyncClient  # the venue's /_venue API
    nursery: trio.Nursery

    async def submit(self, body: dict[str, Any], key: str | None = None) -> tuple[int, dict]:
        return await replied(
            self.coordinator.submit("primary", *typed(body, BatchRequest), key, "test"))

    async def orders(self) -> list[dict[str, Any]]:
        response = await self.kite.get("/orders")
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()["data"]
        return rows

    async def positions(self) -> dict[str, int]:
        response = await self.kite.get("/portfolio/positions")
        assert response.status_code == 200, response.text
        return {p["tradingsymbol"]: p["quantity"] for p in response.json()["data"]["net"]
                if p["quantity"]}

    async def faults(self, **faults: Any) -> None:
        response = await self.control.post("/_venue/faults", json=faults)
        assert response.status_code == 200, response.text

    async def ltp(self, symbol: str, price: float) -> None:
        response = await self.control.post("/_venue/ltp", json={f"NFO:{symbol}": price})
        assert response.status_code == 200, response.text


@asynccontextmanager
async def open_desk(
    venue: VenueAddress, store_url: str, config: BatchConfig = FAST,
    on_late: Callable[[str], None] | None = None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> AsyncIterator[Desk]:
    """Store, actor (connected) and coordinator (recovered, running) on `venue`; `on_late`
    and `on_event` as `BatchCoordinator` takes them."""
    settings = KiteSettings("paper", "paper-primary", venue.rest_url, venue.ticker_url,
                            stall_timeout_s=2.0)
    broker = KiteBroker(settings)
    async with (
        open_store(store_url) as store,
        kite_http(venue) as kite,
        httpx.AsyncClient(base_url=venue.rest_url, timeout=10.0) as control,
        trio.open_nursery() as nursery,
    ):
        actor = AccountActor("primary", broker, store, FAST_ACTOR)
        await nursery.start(actor.run)
        await connected(actor)
        coordinator = BatchCoordinator(store, {"primary": actor}, config, on_late=on_late,
                                       on_event=on_event)
        await nursery.start(coordinator.run)
        try:
            yield Desk(coordinator, actor, store, kite, control, nursery)
        finally:
            nursery.cancel_scope.cancel()
            await broker.aclose()


async def connected(actor: AccountActor) -> None:
    sub = actor.subscribe()
    try:
        if json.loads(sub.initial[-1]).get("upstream") == "connected":
            return
        async for text in sub.receive:
            if json.loads(text).get("upstream") == "connected":
                return
    finally:
        actor.unsubscribe(sub)


@pytest.fixture
async def desk(venue: VenueAddress, sqlite_url: str) -> AsyncIterator[Desk]:
    async with open_desk(venue, sqlite_url) as opened:
        yield opened


def stored_request(side: str, symbol: str = NIFTY_FUT, quantity: int = 75, tag: str = "") -> dict:
    """A MARKET leg as the store keeps it (the OrderRequest the broker was sent)."""
    return attrs.asdict(OrderRequest(symbol, "NFO", side, "MARKET", quantity, "NRML",
                                     tag=tag, market_protection=-1))


async def crashed_batch(
    url: str, key: str, legs: list[tuple[str, str]], status: str = "running",
    reverses: list[LegRecord] | None = None, filled: dict[int, int] | None = None,
) -> tuple[str, list[str]]:
    """Store an unfinished batch as a crash left it; `legs` is (side, leg status) per leg,
    `filled` the filled quantity stored per leg index."""
    batch_id = new_batch_id()
    leg_tags = [tag_for(batch_id, n, "L", 0) for n in range(len(legs))]
    body: dict[str, Any] = {"orders": [leg(side=side) for side, _ in legs]}
    async with open_store(url) as store:
        now = time.time()
        await store.create_batch(
            BatchRecord(batch_id, "primary", key, body_hash(body), body, "running", None, now, now),
            [LegRecord(batch_id, n, leg_tags[n], state, None, stored_request(side, tag=leg_tags[n]),
                       {"filled_quantity": (filled or {}).get(n, 0)})
             for n, (side, state) in enumerate(legs)],
        )
        for record in reverses or []:
            await store.add_leg(attrs.evolve(record, batch_id=batch_id,
                                             tag=record.tag.replace("BATCH", batch_id)))
        if status != "running":
            await store.update_batch(batch_id, status=status)
    return batch_id, leg_tags


async def place_at_venue(venue: VenueAddress, side: str, tag: str, **extra: Any) -> str:
    """An order that reached the broker before the crash."""
    async with kite_http(venue) as kite:
        response = await kite.post("/orders/regular", data=market_form(
            transaction_type=side, tag=tag, **extra))
    assert response.status_code == 200, response.text
    order_id: str = response.json()["data"]["order_id"]
    return order_id


async def resume(desk: Desk, key: str, legs: list[tuple[str, str]]) -> dict[str, Any]:
    """What a client retrying with the same key gets after the restart: the recovered result."""
    body = {"orders": [leg(side=side) for side, _ in legs]}
    status, result = await desk.submit(body, key=key)
    assert status == 200, result
    return result


async def place(desk: Desk, form: dict[str, Any]) -> str:
    """An order placed at the venue directly (another front-end, a manual trade)."""
    response = await desk.kite.post("/orders/regular", data=form)
    assert response.status_code == 200, response.text
    order_id: str = response.json()["data"]["order_id"]
    return order_id
