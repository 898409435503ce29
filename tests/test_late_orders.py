"""A late order after recovery (actors/orders/late_orders.py): a leg recovery concluded
NOT_PLACED lands at the broker afterwards, as a paused owner's (or a killed process's) POST
would. Start-up recovery has the same race as a [cluster] takeover, so one node shows it: a
batch whose leg was stored PLACING and never reached the venue is recovered at start (NOT_PLACED),
then an order with that leg's tag is posted to the venue's Kite API with the account's token,
as the stalled node would have. Real Postgres, the paper venue over loopback."""

from __future__ import annotations

from typing import Any

import attrs
import trio

from actors.orders import single_tag
from brokers.paper import VenueAddress
from store import LegRecord
from tests.fixtures_desk import (
    FAST,
    crashed_batch,
    open_desk,
    place_at_venue,
    resume,
    stored_request,
)
from tests.fixtures_orders import tags
from tests.fixtures_venue import NIFTY_FUT, kite_http, order_form
from web.metrics import Metrics

#: A window long enough for any test step (a late order is found by push or by a poll).
WATCHED = attrs.evolve(FAST, late_watch_s=60.0, late_poll_s=0.5)


async def _place_late(venue: VenueAddress, form: dict[str, object]) -> str:
    async with kite_http(venue) as kite:  # the account's token, as the stalled node had it
        response = await kite.post("/orders/regular", data=form)
    assert response.status_code == 200, response.text
    order_id: str = response.json()["data"]["order_id"]
    return order_id


async def test_a_late_filled_leg_is_flattened_counted_and_shown_on_the_batch(
    venue: VenueAddress, pg_url: str
) -> None:
    legs = [("BUY", "PLACED"), ("SELL", "PLACING")]
    batch_id, leg_tags = await crashed_batch(pg_url, "late-1", legs)
    metrics = Metrics()
    with trio.fail_after(30):
        await place_at_venue(venue, "BUY", leg_tags[0])
        async with open_desk(venue, pg_url, WATCHED, on_late=metrics.late_order) as desk:
            result = await resume(desk, "late-1", legs)
            assert result["status"] == "rolled_back", result
            assert result["legs"][1]["status"] == "NOT_PLACED"
            assert "late_orders" not in result
            await desk.coordinator.statistics_until(lambda s: s.late_watching == 1)
            late_id = await place_at_venue(venue, "SELL", leg_tags[1])  # MARKET: filled
            stats = await desk.coordinator.statistics_until(lambda s: s.late_undone == 1)
            assert (stats.late_orders, stats.late_watching) == (1, 0)
            result = await resume(desk, "late-1", legs)
            assert result["status"] == "rolled_back", result
            [late] = result["late_orders"]
            assert (late["index"], late["tag"], late["order_id"], late["status"],
                    late["filled_quantity"]) == (1, leg_tags[1], late_id, "COMPLETE", 75), late
            assert (late["rollback"]["action"], late["rollback"]["filled"],
                    late["rollback"]["remaining"]) == ("flattened", 75, 0), late
            assert result["legs"][1]["status"] == "NOT_PLACED"  # the fields as they were
            assert await desk.positions() == {}
            assert sorted(tags(await desk.orders())) == sorted(
                [leg_tags[0], f"od{batch_id}0R0", leg_tags[1], f"od{batch_id}1R0"])
    assert b'orderdesk_late_orders_total{account="primary"} 1.0' in metrics.render()


async def test_a_late_resting_leg_is_cancelled(venue: VenueAddress, pg_url: str) -> None:
    legs = [("SELL", "PLACED"), ("BUY", "PLACING")]
    batch_id, leg_tags = await crashed_batch(pg_url, "late-2", legs)
    with trio.fail_after(30):
        await place_at_venue(venue, "SELL", leg_tags[0])
        async with open_desk(venue, pg_url, WATCHED) as desk:
            result = await resume(desk, "late-2", legs)
            assert result["status"] == "rolled_back", result
            await desk.coordinator.statistics_until(lambda s: s.late_watching == 1)
            late_id = await _place_late(venue, order_form(tag=leg_tags[1]))  # rests OPEN
            await desk.coordinator.statistics_until(lambda s: s.late_undone == 1)
            [late] = (await resume(desk, "late-2", legs))["late_orders"]
            assert (late["order_id"], late["status"], late["rollback"]["action"]) == (
                late_id, "CANCELLED", "cancelled"), late
            assert await desk.positions() == {}
            assert sorted(tags(await desk.orders())) == sorted(
                [leg_tags[0], f"od{batch_id}0R0", leg_tags[1]])  # no reverse: nothing filled


async def test_other_tags_and_orders_after_the_window_are_left_alone(
    venue: VenueAddress, pg_url: str
) -> None:
    legs = [("BUY", "PLACED"), ("SELL", "PLACING")]
    batch_id, leg_tags = await crashed_batch(pg_url, "late-3", legs)
    short = attrs.evolve(FAST, late_watch_s=1.5, late_poll_s=0.2)
    single = single_tag("primary")
    with trio.fail_after(30):
        await place_at_venue(venue, "BUY", leg_tags[0])
        async with open_desk(venue, pg_url, short) as desk:
            await resume(desk, "late-3", legs)
            await desk.coordinator.statistics_until(lambda s: s.late_watching == 1)
            await place_at_venue(venue, "BUY", single)  # an ordinary single order, watched not
            await desk.coordinator.statistics_until(lambda s: s.late_watching == 0)
            with desk.actor.watch(leg_tags[1]) as seen:  # the window is over: then it lands
                await place_at_venue(venue, "SELL", leg_tags[1])
                while (await seen.receive()).status != "COMPLETE":
                    pass
            stats = desk.coordinator.statistics()
            assert (stats.late_orders, stats.late_undone) == (0, 0)
            assert "late_orders" not in await resume(desk, "late-3", legs)
            assert sorted(tags(await desk.orders())) == sorted(
                [leg_tags[0], f"od{batch_id}0R0", single, leg_tags[1]])  # nothing undone
            assert await desk.positions() == {}  # the single BUY and the late SELL: net flat


async def test_a_late_order_that_cannot_be_undone_makes_the_batch_rollback_failed(
    venue: VenueAddress, pg_url: str
) -> None:
    """Its reverse order's POST fails (a 500, no order created): the late fill's exposure is
    named on the batch, which becomes rollback_failed."""
    legs = [("BUY", "PLACED"), ("SELL", "PLACING")]
    _, leg_tags = await crashed_batch(pg_url, "late-4", legs)
    events: list[tuple[str, dict[str, Any]]] = []
    with trio.fail_after(30):
        await place_at_venue(venue, "BUY", leg_tags[0])
        async with open_desk(venue, pg_url, WATCHED,
                             on_event=lambda *event: events.append(event)) as desk:
            assert (await resume(desk, "late-4", legs))["status"] == "rolled_back"
            await desk.coordinator.statistics_until(lambda s: s.late_watching == 1)
            await desk.faults(fail_nth_order=2)  # the late order goes in, its reverse not
            await place_at_venue(venue, "SELL", leg_tags[1])
            await desk.coordinator.statistics_until(
                lambda s: s.late_orders == 1 and s.recoveries_pending == 0)
            result = await resume(desk, "late-4", legs)
            assert result["status"] == "rollback_failed", result
            [late] = result["late_orders"]
            assert late["rollback"]["action"] == "failed", late
            assert late["rollback"]["unknown_tags"], late
            [exposure] = result["exposure"]
            assert (exposure["index"], exposure["transaction_type"]) == (1, "SELL"), exposure
            assert desk.coordinator.statistics().late_undone == 0
            assert await desk.positions() == {NIFTY_FUT: -75}  # the late SELL, held
    assert [(name, body["status"]) for name, body in events] == [
        ("batch.rolled_back", "rolled_back"), ("batch.rollback_failed", "rollback_failed")]
    assert events[-1][1]["late_orders"] == result["late_orders"]


async def test_a_late_reverse_order_is_bought_back_under_an_exit_tag(
    venue: VenueAddress, pg_url: str
) -> None:
    """A rollback's reverse stored PLACING never reached the venue before the crash: recovery
    concludes it NOT_PLACED and flattens the leg with the next reverse (R1). Then the stalled
    R0 lands and fills: the leg is over-flattened (short 75). The guard buys it back under an
    exit tag (`od<id>00X0`), never under one of the leg's reverse tags."""
    legs = [("BUY", "COMPLETE")]
    # The leg's first reverse (stored at index 100 x (attempt + 1) + the leg's).
    r0 = LegRecord("", 100, "odBATCH0R0", "PLACING", None,
                   stored_request("SELL", tag="odBATCH0R0"), {}, kind="reverse")
    batch_id, leg_tags = await crashed_batch(pg_url, "late-5", legs, status="rolling_back",
                                             reverses=[r0], filled={0: 75})
    reverse_tags = [f"od{batch_id}0R0", f"od{batch_id}0R1"]
    with trio.fail_after(30):
        await place_at_venue(venue, "BUY", leg_tags[0])
        async with open_desk(venue, pg_url, WATCHED) as desk:
            result = await resume(desk, "late-5", legs)
            assert result["status"] == "rolled_back", result
            assert await desk.positions() == {}  # flattened by R1
            await desk.coordinator.statistics_until(lambda s: s.late_watching == 1)
            late_id = await place_at_venue(venue, "SELL", reverse_tags[0])  # R0 lands, fills
            await desk.coordinator.statistics_until(lambda s: s.late_undone == 1)
            result = await resume(desk, "late-5", legs)
            [late] = result["late_orders"]
            assert (late["index"], late["tag"], late["order_id"], late["filled_quantity"],
                    late["rollback"]["action"], late["rollback"]["remaining"]) == (
                100, reverse_tags[0], late_id, 75, "flattened", 0), late
            assert result["status"] == "rolled_back", result
            assert await desk.positions() == {}
            venue_tags = tags(await desk.orders())
            exits = [t for t in venue_tags if t[-2] == "X"]
            assert len(exits) == 1 and exits[0].endswith("00X0"), venue_tags
            assert sorted(venue_tags) == sorted([leg_tags[0], *reverse_tags, *exits])
