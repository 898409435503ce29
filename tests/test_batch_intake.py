"""A batch is stored while its margin is checked, and placed only once the answer is in; a
refused margin leaves nothing stored (the idempotency key is free again). Real paper venue (its
REST answers held back by `latency_ms`), real SQLite store, the coordinator in-process."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from brokers.base import OrderRequest
from tests.fixtures_desk import Desk, open_desk
from tests.fixtures_orders import leg
from tests.fixtures_venue import BANKNIFTY_FUT, NIFTY_CE, start_venue
from tests.fixtures_waits import wait_until

LATENCY_S = 1.0


async def test_the_batch_is_stored_while_its_margin_is_asked_and_placed_after(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"orders": [leg(), leg(BANKNIFTY_FUT, "SELL", 35)]}
    status, warm = await desk.submit({"orders": [leg(NIFTY_CE)]})  # the instrument master
    assert status == 200 and warm["status"] == "success", warm
    limiter = desk.coordinator.limiter("primary")
    assert limiter is not None
    granted = limiter.statistics().granted
    await desk.faults(latency_ms=int(LATENCY_S * 1000))
    answer: dict[str, Any] = {}
    placed_at: list[float] = []
    real_place = desk.actor.broker.place

    async def place(request: OrderRequest) -> str:
        placed_at.append(trio.current_time())
        return await real_place(request)

    monkeypatch.setattr(desk.actor.broker, "place", place)

    async def submit() -> None:
        answer["status"], answer["body"] = await desk.submit(body, "overlap-1")

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            started = trio.current_time()
            nursery.start_soon(submit)
            batch, legs = await wait_until(lambda: desk.store.find_batch("primary", "overlap-1"),
                                           "the batch stored", poll_s=0.01)
            # Stored (the legs written ahead as PLACING) before the margin answer could be in,
            # and no leg has taken a grant to be sent.
            assert trio.current_time() - started < LATENCY_S
            assert [row.status for row in legs] == ["PLACING", "PLACING"]
            assert limiter.statistics().granted == granted
    # The place calls only once the margin answer is in. (The batch may answer before their
    # own answers: a leg is COMPLETE once its fill is pushed, `actors/orders/answer.py`.)
    assert len(placed_at) == 2 and min(placed_at) - started >= LATENCY_S, placed_at
    assert answer["status"] == 200 and answer["body"]["status"] == "success", answer
    assert answer["body"]["batch_id"] == batch.batch_id
    assert limiter.statistics().granted == granted + 2


async def test_a_refused_margin_leaves_nothing_stored_and_the_key_free(
    nursery: trio.Nursery, sqlite_url: str
) -> None:
    venue = await start_venue(nursery, funds=100_000.0)
    with trio.fail_after(20):
        async with open_desk(venue, sqlite_url) as poor:
            status, refused = await poor.submit(
                {"orders": [leg(), leg(BANKNIFTY_FUT, quantity=35)]}, "tight-1")
            assert status == 422, refused
            assert [(f["path"], f["rule"]) for f in refused["fields"]] == [("orders", "margin")]
            assert await poor.store.find_batch("primary", "tight-1") is None
            assert await poor.orders() == []
            # The same key with a basket that fits is a new batch, not a conflict.
            status, placed = await poor.submit({"orders": [leg(NIFTY_CE)]}, "tight-1")
            assert status == 200 and placed["status"] == "success", placed
