"""Single orders with an Idempotency-Key: a retry returns the first order (found by its tag) and
never places another; an unknown outcome answers 202 with the tag instead of a 5xx that invites a
blind retry. Asserted at the venue (its `/orders`), over HTTP through the whole service.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import trio

from actors.batch import BatchConfig, single_tag
from actors.requests import LegRequest
from brokers.paper import VenueAddress
from supervision.service import Running
from tests.fixtures_desk import connected, open_desk, place_at_venue
from tests.fixtures_orders import leg
from tests.fixtures_service import api, open_test_service, venue_control
from tests.fixtures_venue import nifty_symbols, venue_orders
from tests.fixtures_web import replied, typed

# The venue holds every answer back longer than a place call (and a lookup) may take.
SLOW_VENUE_MS = 500
SHORT = BatchConfig(session=None, place_timeout_s=0.2, lookup_timeout_s=0.2)


def tag_counts(orders: list[dict]) -> Counter[str]:
    return Counter(o["tag"] for o in orders)


async def post(http: httpx.AsyncClient, body: dict, key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await http.post("/accounts/primary/orders", json=body, headers=headers)


async def test_the_same_key_places_once_and_another_key_places_again(service: Running) -> None:
    with trio.fail_after(30):
        async with api(service) as http, venue_control(service) as venue:
            fut, _ = await nifty_symbols(venue)
            first = await post(http, leg(fut), "single-1")
            assert first.status_code == 200, first.text
            order_id, tag = first.json()["order_id"], first.json()["tag"]
            assert tag == single_tag("primary", "single-1") and len(tag) <= 20

            again = []

            async def retry() -> None:
                again.append(await post(http, leg(fut), "single-1"))

            async with trio.open_nursery() as nursery:  # concurrent retries too
                nursery.start_soon(retry)
                nursery.start_soon(retry)
            assert [r.status_code for r in again] == [200, 200], [r.text for r in again]
            assert {r.json()["order_id"] for r in again} == {order_id}
            assert tag_counts(await venue_orders(venue)) == {tag: 1}

            other = await post(http, leg(fut), "single-2")
            assert other.status_code == 200, other.text
            assert other.json()["order_id"] != order_id
            assert tag_counts(await venue_orders(venue)) == {
                tag: 1, single_tag("primary", "single-2"): 1}

            conflict = await post(http, leg(fut, "SELL"), "single-1")
            assert conflict.status_code == 409, conflict.text
            assert conflict.json()["error"] == "idempotency_conflict"
            assert len(await venue_orders(venue)) == 2


async def test_without_a_key_every_post_places(service: Running) -> None:
    with trio.fail_after(30):
        async with api(service) as http, venue_control(service) as venue:
            fut, _ = await nifty_symbols(venue)
            answers = [await post(http, leg(fut)) for _ in range(2)]
            assert [a.status_code for a in answers] == [200, 200]
            assert answers[0].json()["tag"] != answers[1].json()["tag"]
            assert len(await venue_orders(venue)) == 2
            bad = await post(http, leg(fut), "x" * 129)
            assert bad.status_code == 400 and "Idempotency-Key" in bad.json()["message"]
            assert len(await venue_orders(venue)) == 2


async def test_unknown_outcome_is_202_and_a_retry_returns_the_accepted_order(
    tmp_path: Path,
) -> None:
    with trio.fail_after(30):
        async with (
            open_test_service(tmp_path, batch_config=SHORT) as running,
            api(running) as http,
            venue_control(running) as venue,
        ):
            await connected(running.actors["primary"])
            fut, _ = await nifty_symbols(venue)
            warm = await post(http, leg(fut, quantity=1))  # loads the instrument master: 422
            assert warm.status_code == 422, warm.text
            await venue.post("/_venue/faults", json={"latency_ms": SLOW_VENUE_MS})

            unknown = await post(http, leg(fut), "slow-1")
            assert unknown.status_code == 202, unknown.text
            tag = single_tag("primary", "slow-1")
            assert unknown.json()["status"] == "unknown" and unknown.json()["tag"] == tag
            assert unknown.json()["message"]

            # Still slow: the retry cannot look the tag up, and places nothing.
            blind = await post(http, leg(fut), "slow-1")
            assert blind.status_code == 503, blind.text

            await venue.delete("/_venue/faults")
            accepted = [o for o in await venue_orders(venue) if o["tag"] == tag]
            assert len(accepted) == 1  # the venue did take the first POST
            retried = await post(http, leg(fut), "slow-1")
            assert retried.status_code == 200, retried.text
            assert retried.json()["order_id"] == accepted[0]["order_id"]
            assert tag_counts(await venue_orders(venue)) == {tag: 1}


async def test_without_the_order_at_the_broker_a_retry_of_an_unknown_outcome_stays_unknown(
    tmp_path: Path,
) -> None:
    with trio.fail_after(30):
        async with (
            open_test_service(tmp_path, batch_config=SHORT) as running,
            api(running) as http,
            venue_control(running) as venue,
        ):
            await connected(running.actors["primary"])
            fut, _ = await nifty_symbols(venue)
            # A 500 that created no order: an unknown outcome, and nothing to find.
            await venue.post("/_venue/faults", json={"fail_nth_order": 1})
            first = await post(http, leg(fut), "lost-1")
            assert first.status_code == 202 and first.json()["status"] == "unknown", first.text
            retried = await post(http, leg(fut), "lost-1")
            assert retried.status_code == 202, retried.text  # never re-sent blindly
            assert await venue_orders(venue) == []


async def test_an_order_placed_before_a_restart_is_found_in_the_reconciled_book(
    venue: VenueAddress, sqlite_url: str
) -> None:
    tag = single_tag("primary", "before-restart")
    with trio.fail_after(20):
        # Placed (the same NIFTY future BUY) just before the process died.
        order_id = await place_at_venue(venue, "BUY", tag)
        async with open_desk(venue, sqlite_url) as desk:
            status, reply = await replied(desk.coordinator.place_single(
                "primary", *typed(leg(), LegRequest), "test", "before-restart"))
            assert status == 200, reply
            assert (reply["order_id"], reply["tag"]) == (order_id, tag)
            assert tag_counts(await desk.orders()) == {tag: 1}
