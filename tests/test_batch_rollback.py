"""Rollback edge cases over the real paper venue: late POSTs, reverses left working, `partial`
batches, recovery on a later day, the `hedge_first` unwind order, stale leg details.

As in test_batch, outcomes are asserted at the venue (its `/orders` and `/portfolio/positions`).
A POST that lands late (after the coordinator's place call timed out and its immediate lookup by
tag found nothing) is simulated by wrapping the broker's `place`: the wrapper hangs until the
call's own timeout while a task of the test's nursery sends the real POST later.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import attrs
import pytest
import trio

from actors.batch import new_batch_id, tag_for
from brokers.base import BrokerUnavailable, OrderRequest
from brokers.paper import VenueAddress
from store import BatchRecord, LegRecord, open_store
from tests.fixtures_desk import FAST, Desk, open_desk
from tests.fixtures_orders import leg, tags
from tests.fixtures_venue import BANKNIFTY_FUT, NIFTY_CE, NIFTY_FUT, start_venue
from tests.fixtures_waits import wait_until
from tests.fixtures_web import replied

Place = Callable[[OrderRequest], Awaitable[str]]


async def _asked_hook(asked: trio.Event, on_asked: Callable[[], Awaitable[None]] | None) -> None:
    await asked.wait()
    if on_asked is not None:
        await on_asked()


def late_post(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, suffix: str, release: trio.Event,
    landed: trio.Event, on_asked: Callable[[], Awaitable[None]] | None = None,
) -> list[str]:
    """The first POST whose tag ends with `suffix` times out (outcome unknown) and reaches the
    venue only once `release` is set; `landed` is set then; `on_asked` runs (in the desk's
    nursery) once that POST was asked for. Returns the tags so delayed."""
    broker = desk.actor.broker
    real_place: Place = broker.place
    delayed: list[str] = []
    asked = trio.Event()
    desk.nursery.start_soon(_asked_hook, asked, on_asked)

    async def land(request: OrderRequest) -> None:
        await release.wait()
        await real_place(request)
        landed.set()

    async def place(request: OrderRequest) -> str:
        if request.tag and request.tag.endswith(suffix) and not delayed:
            delayed.append(request.tag)
            asked.set()
            desk.nursery.start_soon(land, request)
            await trio.sleep_forever()  # until the place call's own timeout: unknown outcome
        return await real_place(request)

    monkeypatch.setattr(broker, "place", place)
    return delayed


async def release_after(delay: float, release: trio.Event) -> None:
    await trio.sleep(delay)
    release.set()


# -- 1. an unknown outcome is watched until the rollback deadline, never "not placed" ----------


async def test_a_leg_whose_post_lands_after_its_lookup_is_found_and_flattened(
    nursery: trio.Nursery, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    venue = await start_venue(nursery)
    config = attrs.evolve(FAST, place_timeout_s=0.3)
    release, landed = trio.Event(), trio.Event()
    with trio.fail_after(20):
        async with open_desk(venue, sqlite_url, config) as desk:
            delayed = late_post(desk, monkeypatch, "0L0", release, landed)
            # The POST lands a second after the immediate lookup found nothing.
            desk.nursery.start_soon(release_after, 1.0, release)
            body = {"orders": [leg(), leg(BANKNIFTY_FUT, "SELL", 35)], "timeout_s": 5}
            status, result = await desk.submit(body)
            assert landed.is_set()
            assert status == 200 and result["status"] == "rolled_back", result
            late = result["legs"][0]
            assert delayed == [late["tag"]]
            assert late["status"] == "COMPLETE" and late["filled_quantity"] == 75
            assert late["error"] is None  # the unknown outcome resolved: no stale error
            assert late["rollback"]["action"] == "flattened"
            assert late["rollback"]["filled"] == 75 and late["rollback"]["remaining"] == 0
            assert result["legs"][1]["rollback"]["action"] == "flattened"
            venue_tags = tags(await desk.orders())
            assert all(n == 1 for n in venue_tags.values()), venue_tags
            assert late["tag"] in venue_tags
            assert await desk.positions() == {}


async def test_a_leg_whose_post_never_shows_up_is_rollback_failed_naming_its_tag(
    nursery: trio.Nursery, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    venue = await start_venue(nursery)
    config = attrs.evolve(FAST, place_timeout_s=0.3, rollback_timeout_s=2.0)
    release, landed = trio.Event(), trio.Event()
    with trio.fail_after(20):
        async with open_desk(venue, sqlite_url, config) as desk:
            late_post(desk, monkeypatch, "0L0", release, landed)
            body = {"orders": [leg(), leg(BANKNIFTY_FUT, "SELL", 35)], "timeout_s": 5}
            status, result = await desk.submit(body)
            assert status == 200 and result["status"] == "rollback_failed", result
            unknown = result["legs"][0]
            assert unknown["status"] == "UNKNOWN" and unknown["order_id"] is None
            rollback = unknown["rollback"]
            assert rollback["action"] == "failed" and rollback["remaining"] is None
            assert rollback["unknown_tags"] == [unknown["tag"]]
            assert unknown["tag"] in rollback["error"]
            assert result["exposure"] == [{
                "index": 0, "tradingsymbol": NIFTY_FUT, "exchange": "NFO", "product": "NRML",
                "transaction_type": "BUY", "quantity": None, "open_order_ids": [],
                "unknown_tags": [unknown["tag"]], "quantity_at_most": 75,
            }]
            assert result["legs"][1]["rollback"]["action"] == "flattened"
            assert await desk.positions() == {}
            # The POST reaches the venue after all: exactly the exposure the result warned of.
            release.set()
            await landed.wait()
            assert await desk.positions() == {NIFTY_FUT: 75}
            assert tags(await desk.orders())[unknown["tag"]] == 1


async def test_a_reverse_that_lands_late_is_counted_and_never_sent_twice(
    nursery: trio.Nursery, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    venue = await start_venue(nursery)
    config = attrs.evolve(FAST, place_timeout_s=0.3)
    release, landed = trio.Event(), trio.Event()
    with trio.fail_after(20):
        async with open_desk(venue, sqlite_url, config) as desk:
            await desk.faults(reject_symbols=[BANKNIFTY_FUT])
            delayed = late_post(desk, monkeypatch, "0R0", release, landed,
                                on_asked=partial(release_after, 1.0, release))
            body = {"orders": [leg(), leg(BANKNIFTY_FUT, "SELL", 35)], "timeout_s": 5}
            status, result = await desk.submit(body)
            assert landed.is_set()
            assert status == 200 and result["status"] == "rolled_back", result
            rollback = result["legs"][0]["rollback"]
            assert (rollback["action"], rollback["filled"], rollback["remaining"]) == (
                "flattened", 75, 0)
            venue_tags = tags(await desk.orders())
            assert set(venue_tags.values()) == {1}
            assert [t for t in venue_tags if "R" in t[-2:]] == delayed  # no second reverse
            assert await desk.positions() == {}


async def test_legs_cancelled_while_waiting_for_a_token_were_never_sent(
    nursery: trio.Nursery, sqlite_url: str
) -> None:
    """One token a second: the first leg is rejected while the others still wait for theirs.
    They were never sent, so the rollback does not watch for them (it would wait 30 s)."""
    venue = await start_venue(nursery)
    config = attrs.evolve(FAST, rate_per_s=1.0, rate_burst=1, rollback_timeout_s=30.0)
    with trio.fail_after(10):
        async with open_desk(venue, sqlite_url, config) as desk:
            await desk.faults(reject_symbols=[BANKNIFTY_FUT])
            body = {"orders": [leg(BANKNIFTY_FUT, quantity=35)] * 3}
            status, result = await desk.submit(body)
            assert status == 200 and result["status"] == "rolled_back", result
            statuses = sorted(item["status"] for item in result["legs"])
            assert statuses == ["NOT_PLACED", "NOT_PLACED", "REJECTED"], result
            for item in result["legs"]:
                assert item["rollback"]["action"] == "none"
                if item["status"] == "NOT_PLACED":
                    assert item["order_id"] is None and "not placed" in item["error"]
            assert len(await desk.orders()) == 1
            stored = await desk.store.get_batch(result["batch_id"])
            assert stored is not None
            assert sorted(r.status for r in stored[1]) == statuses


# -- 2. a reverse still working when the rollback ends: counted and named ---------------------


async def test_a_reverse_still_working_at_the_end_is_named_and_its_fills_counted(
    nursery: trio.Nursery, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leg fills 150 of 300 and is cancelled; its reverse (150) fills 75 and rests. The
    broker is slow to answer about the reverse (each GET of its history takes a second) and
    refuses to cancel it (5xx). The rollback still ends on time, the exposure reported is what
    the venue holds (75, not 150) and the working reverse is named."""
    venue = await start_venue(nursery)
    config = attrs.evolve(FAST, rollback_timeout_s=2.0, cleanup_grace_s=0.5)
    with trio.fail_after(20):
        async with open_desk(venue, sqlite_url, config) as desk:
            await desk.faults(partial_fill_ratio=0.5)
            broker = desk.actor.broker
            real_cancel, real_history = broker.cancel, broker.order_history
            stuck: list[str] = []

            async def is_reverse(order_id: str) -> bool:
                tag = {o["order_id"]: o["tag"] for o in await desk.orders()}[order_id]
                return tag[-2] == "R"

            async def slow_history(order_id: str) -> Any:
                if await is_reverse(order_id):
                    await trio.sleep(1.0)
                return await real_history(order_id)

            async def refused_cancel(order_id: str, **options: Any) -> str:
                if await is_reverse(order_id):
                    stuck.append(order_id)
                    raise BrokerUnavailable("503 from the exchange gateway")
                return await real_cancel(order_id, **options)

            monkeypatch.setattr(broker, "cancel", refused_cancel)
            monkeypatch.setattr(broker, "order_history", slow_history)
            began = trio.current_time()
            status, result = await desk.submit({"orders": [leg(quantity=300)], "timeout_s": 1})
            # the batch's deadline, the rollback's, its cleanup grace; a little slack
            assert trio.current_time() - began < 1 + 2.0 + 0.5 + 0.5
            assert status == 200 and result["status"] == "rollback_failed", result
            item = result["legs"][0]
            assert item["status"] == "CANCELLED" and item["filled_quantity"] == 150
            reverse_id = stuck[0]
            rollback = item["rollback"]
            assert rollback["action"] == "failed" and rollback["order_id"] == reverse_id
            assert reverse_id in rollback["error"]
            assert (rollback["filled"], rollback["remaining"]) == (75, 75)
            assert rollback["open_order_ids"] == [reverse_id]
            assert result["exposure"] == [{
                "index": 0, "tradingsymbol": NIFTY_FUT, "exchange": "NFO", "product": "NRML",
                "transaction_type": "BUY", "quantity": 75, "open_order_ids": [reverse_id],
            }]
            venue_orders = {o["order_id"]: o for o in await desk.orders()}
            assert venue_orders[reverse_id]["status"] == "OPEN"
            assert venue_orders[reverse_id]["filled_quantity"] == 75
            assert await desk.positions() == {NIFTY_FUT: 75}  # as reported
            assert len(venue_orders) == 2  # no second reverse while one works


# -- 3. rollback_on_failure=false: failed legs are cancelled, nothing flattened ---------------


async def test_partial_cancels_the_legs_still_working_and_records_their_fill(desk: Desk) -> None:
    await desk.faults(partial_fill_ratio=0.5, reject_symbols=[BANKNIFTY_FUT])
    body = {"orders": [leg(quantity=150), leg(BANKNIFTY_FUT, quantity=35)],
            "rollback_on_failure": False, "timeout_s": 5}
    with trio.fail_after(15):
        status, result = await desk.submit(body)
    assert status == 200 and result["status"] == "partial", result
    item = result["legs"][0]
    assert item["status"] == "CANCELLED" and item["filled_quantity"] == 75
    assert item["rollback"] is None
    assert result["legs"][1]["status"] == "REJECTED"
    orders = await desk.orders()
    assert all(o["status"] in ("COMPLETE", "CANCELLED", "REJECTED") for o in orders), orders
    assert len(orders) == 2  # nothing flattened
    assert await desk.positions() == {NIFTY_FUT: 75}
    stored = await desk.store.get_batch(result["batch_id"])
    assert stored is not None and stored[1][0].status == "CANCELLED"
    assert stored[1][0].detail["filled_quantity"] == 75


# -- 4. recovery on a later day: not listed means lost -----------------------------------------


def _request(side: str, tag: str) -> dict[str, Any]:
    return attrs.asdict(OrderRequest(NIFTY_FUT, "NFO", side, "MARKET", 75, "NRML", tag=tag,
                                     market_protection=-1))


async def _old_batch(url: str, legs: list[tuple[str, str, str | None, dict]]) -> list[str]:
    """A batch created two days ago, unfinished: (side, status, order_id, detail) per leg."""
    batch_id = new_batch_id()
    leg_tags = [tag_for(batch_id, n, "L", 0) for n in range(len(legs))]
    created = time.time() - 2 * 86400
    async with open_store(url) as store:
        await store.create_batch(
            BatchRecord(batch_id, "primary", None, "hash", {"orders": []}, "running", None,
                        created, created),
            [LegRecord(batch_id, n, leg_tags[n], state, order_id, _request(side, leg_tags[n]),
                       detail)
             for n, (side, state, order_id, detail) in enumerate(legs)],
        )
    return [batch_id, *leg_tags]


async def _recovered(desk: Desk, batch_id: str) -> dict[str, Any]:
    async def finished() -> dict[str, Any] | None:
        status, result = await replied(desk.coordinator.get("primary", batch_id))
        assert status == 200
        return None if result["status"] in ("running", "rolling_back") else result

    return await wait_until(finished, "the batch recovered", math.inf)


async def test_recovery_on_a_later_day_names_every_sent_leg_as_lost(
    venue: VenueAddress, sqlite_url: str
) -> None:
    # Sent (PLACING, no order id known) and never listed: yesterday, "not placed" is a guess.
    first = await _old_batch(sqlite_url, [("BUY", "PLACING", None, {}),
                                          ("SELL", "PENDING", None, {})])
    # A stored COMPLETE leg: its details come back from the store, not from the broker.
    detail = {"filled_quantity": 75, "average_price": 24010.5, "error": None,
              "status_message": None, "rollback": None}
    second = await _old_batch(sqlite_url, [
        ("BUY", "COMPLETE", "251127000000009", detail),
        ("SELL", "NOT_PLACED", None, {"error": "not placed: the batch failed first"}),
    ])
    with trio.fail_after(20):
        async with open_desk(venue, sqlite_url) as desk:
            result = await _recovered(desk, first[0])
            assert result["status"] == "rollback_failed", result
            lost, unsent = result["legs"]
            assert lost["rollback"]["action"] == "failed"
            assert lost["rollback"]["unknown_tags"] == [first[1]]
            assert "no longer lists" in lost["error"] and lost["status"] == "PLACING"
            assert unsent["rollback"]["action"] == "none" and unsent["status"] == "PENDING"
            assert [e["index"] for e in result["exposure"]] == [0]
            assert result["exposure"][0]["quantity"] is None
            assert result["exposure"][0]["unknown_tags"] == [first[1]]

            result = await _recovered(desk, second[0])
            assert result["status"] == "rollback_failed", result
            done, unsent = result["legs"]
            assert (done["status"], done["filled_quantity"], done["average_price"]) == (
                "COMPLETE", 75, 24010.5)
            assert done["order_id"] == "251127000000009"
            assert done["rollback"]["unknown_tags"] == [second[1]]
            assert unsent["error"] == "not placed: the batch failed first"
            assert unsent["rollback"]["action"] == "none"

            assert await desk.orders() == []  # nothing placed: positions are not guessed
            assert await desk.positions() == {}
            for batch_id in (first[0], second[0]):
                stored = await desk.store.get_batch(batch_id)
                assert stored is not None and stored[0].status == "rollback_failed"


# -- 5. hedge_first: the short is closed before the hedge is removed ---------------------------


async def test_hedge_first_rollback_closes_sell_legs_before_buy_legs(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    await desk.faults(reject_symbols=[BANKNIFTY_FUT])
    broker = desk.actor.broker
    real_place: Place = broker.place
    reverses: list[tuple[str, dict[str, int]]] = []

    async def place(request: OrderRequest) -> str:
        if request.tag and request.tag[-2] == "R":  # what the venue holds as it is sent
            if not reverses:
                await desk.faults(fill_delay_ms=500)  # reverses take a while to fill
            reverses.append((request.tag, await desk.positions()))
        return await real_place(request)

    monkeypatch.setattr(broker, "place", place)
    body = {"orders": [leg(), leg(NIFTY_CE, "SELL", 75), leg(BANKNIFTY_FUT, "SELL", 35)],
            "execution": "hedge_first", "timeout_s": 5}
    with trio.fail_after(15):
        status, result = await desk.submit(body)
    assert status == 200 and result["status"] == "rolled_back", result
    batch_id = result["batch_id"]
    assert [t for t, _ in reverses] == [f"od{batch_id}1R0", f"od{batch_id}0R0"]
    assert reverses[0][1] == {NIFTY_FUT: 75, NIFTY_CE: -75}
    assert reverses[1][1] == {NIFTY_FUT: 75}  # the short is closed: now the hedge goes
    assert [item["rollback"]["action"] for item in result["legs"]] == [
        "flattened", "flattened", "none"]
    assert await desk.positions() == {}


# -- 6. a leg that ends COMPLETE after all carries no stale error -----------------------------


async def test_a_leg_completing_during_its_cancel_has_no_stale_error(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = desk.actor.broker
    real_cancel = broker.cancel

    async def cancel_overtaken_by_a_fill(order_id: str, **options: Any) -> str:
        await desk.ltp(NIFTY_FUT, 19990.0)  # the resting BUY at 20000 fills now
        return await real_cancel(order_id, **options)

    monkeypatch.setattr(broker, "cancel", cancel_overtaken_by_a_fill)
    body = {"orders": [leg(BANKNIFTY_FUT, quantity=35), leg(order_type="LIMIT", price=20000.0)],
            "timeout_s": 1}
    with trio.fail_after(15):
        status, result = await desk.submit(body)
    assert status == 200 and result["status"] == "rolled_back", result
    late = result["legs"][1]
    assert late["status"] == "COMPLETE" and late["error"] is None
    assert late["rollback"]["action"] == "flattened"
    assert (result["succeeded"], result["failed"]) == (0, 0)  # both filled, both undone
    stored = await desk.store.get_batch(result["batch_id"])
    assert stored is not None and stored[1][1].detail["error"] is None
    assert await desk.positions() == {}


async def test_hedge_first_keeps_the_hedge_when_the_short_cannot_be_closed(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    await desk.faults(reject_symbols=[BANKNIFTY_FUT])
    broker = desk.actor.broker
    real_place: Place = broker.place
    reverse_tags: list[str] = []

    async def place(request: OrderRequest) -> str:
        if request.tag and request.tag[-2] == "R":
            reverse_tags.append(request.tag)
            await desk.faults(reject_symbols=[BANKNIFTY_FUT, NIFTY_CE])  # the short stays
        return await real_place(request)

    monkeypatch.setattr(broker, "place", place)
    body = {"orders": [leg(), leg(NIFTY_CE, "SELL", 75), leg(BANKNIFTY_FUT, "SELL", 35)],
            "execution": "hedge_first", "timeout_s": 5}
    with trio.fail_after(15):
        status, result = await desk.submit(body)
    assert status == 200 and result["status"] == "rollback_failed", result
    batch_id = result["batch_id"]
    assert reverse_tags == [f"od{batch_id}1R0"]  # the hedge was not touched
    hedge, short, _ = result["legs"]
    assert short["rollback"]["action"] == "failed" and short["rollback"]["status"] == "REJECTED"
    assert hedge["rollback"]["action"] == "failed" and "hedge" in hedge["rollback"]["error"]
    assert {(e["tradingsymbol"], e["quantity"]) for e in result["exposure"]} == {
        (NIFTY_FUT, 75), (NIFTY_CE, 75)}
    assert await desk.positions() == {NIFTY_FUT: 75, NIFTY_CE: -75}
