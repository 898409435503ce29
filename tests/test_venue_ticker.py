"""The venue's ticker websocket: order frames in order, heartbeats, isolation, faults, shutdown."""

from __future__ import annotations

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from brokers.paper import serve_venue
from tests.fixtures_venue import (
    NIFTY_FUT,
    TEST_CONFIG,
    assert_error,
    kite_http,
    market_form,
    next_order,
    order_form,
    place,
    start_venue,
    ticker_url,
)


async def test_market_order_pushes_open_then_complete(venue, kite):
    with trio.fail_after(10):
        async with open_websocket_url(ticker_url(venue.ticker_url)) as ws:
            order_id = await place(kite, market_form())
            opened, completed = await next_order(ws), await next_order(ws)
            assert (opened["order_id"], opened["status"]) == (order_id, "OPEN")
            assert (completed["order_id"], completed["status"]) == (order_id, "COMPLETE")
            assert completed["filled_quantity"] == 75


async def test_limit_cross_cancel_and_rejection_frames(venue, kite, control):
    with trio.fail_after(10):
        async with open_websocket_url(ticker_url(venue.ticker_url)) as ws:
            crossing = await place(kite, order_form(price=23900))
            assert (await next_order(ws))["status"] == "OPEN"
            await control.post("/_venue/ltp", json={f"NFO:{NIFTY_FUT}": 23890})
            frame = await next_order(ws)
            assert (frame["order_id"], frame["status"]) == (crossing, "COMPLETE")
            resting = await place(kite, order_form(price=20000))
            assert (await next_order(ws))["status"] == "OPEN"
            await kite.put(f"/orders/regular/{resting}", data={"price": 20001})
            assert [(await next_order(ws))["status"] for _ in range(2)] == ["MODIFIED", "OPEN"]
            await kite.delete(f"/orders/regular/{resting}")
            frame = await next_order(ws)
            assert (frame["order_id"], frame["status"]) == (resting, "CANCELLED")
            too_big = order_form(exchange="NSE", tradingsymbol="SBIN", quantity=100_000,
                                 product="CNC")
            rejected = await place(kite, too_big)
            frame = await next_order(ws)
            assert (frame["order_id"], frame["status"]) == (rejected, "REJECTED")
            assert frame["status_message"].startswith("Insufficient funds")


async def test_partial_fill_pushes_update_then_complete(venue, kite, control):
    with trio.fail_after(10):
        await control.post("/_venue/faults", json={"partial_fill_ratio": 0.5})
        async with open_websocket_url(ticker_url(venue.ticker_url)) as ws:
            order_id = await place(kite, market_form(quantity=150))
            assert (await next_order(ws))["status"] == "OPEN"
            update = await next_order(ws)
            assert (update["status"], update["filled_quantity"], update["pending_quantity"]) == (
                "UPDATE", 75, 75)
            await control.post(f"/_venue/fill/{order_id}")
            done = await next_order(ws)
            assert (done["status"], done["filled_quantity"]) == ("COMPLETE", 150)


async def test_fill_delay(venue, kite, control):
    with trio.fail_after(10):
        await control.post("/_venue/faults", json={"fill_delay_ms": 200})
        async with open_websocket_url(ticker_url(venue.ticker_url)) as ws:
            order_id = await place(kite, market_form())
            orders = (await kite.get("/orders")).json()["data"]
            assert orders[0]["status"] == "OPEN"
            assert (await next_order(ws))["status"] == "OPEN"
            frame = await next_order(ws)
            assert (frame["order_id"], frame["status"]) == (order_id, "COMPLETE")


async def test_simulation_clock_fills_a_partial_remainder(nursery):
    """With a running clock, the next price step fills what a partial fill left open."""
    with trio.fail_after(10):
        address = await start_venue(nursery, tick_interval_s=0.05)
        async with (
            httpx.AsyncClient(base_url=address.rest_url) as control,
            kite_http(address) as kite,
            open_websocket_url(ticker_url(address.ticker_url)) as ws,
        ):
            await control.post("/_venue/faults", json={"partial_fill_ratio": 0.5})
            await place(kite, market_form(quantity=150))
            statuses = [(await next_order(ws))["status"] for _ in range(3)]
            assert statuses == ["OPEN", "UPDATE", "COMPLETE"]


async def test_heartbeat_is_one_byte_binary(venue):
    with trio.fail_after(5):
        async with open_websocket_url(ticker_url(venue.ticker_url)) as ws:
            message = await ws.get_message()
            assert isinstance(message, bytes) and len(message) == 1


async def test_accounts_only_see_their_own_orders(venue, kite):
    with trio.fail_after(10):
        async with (
            open_websocket_url(ticker_url(venue.ticker_url, "primary")) as mine,
            open_websocket_url(ticker_url(venue.ticker_url, "secondary")) as theirs,
            kite_http(venue, "secondary") as other,
        ):
            primary_order = await place(kite, market_form())
            secondary_order = await place(other, market_form())
            assert {(await next_order(mine))["order_id"] for _ in range(2)} == {primary_order}
            assert {(await next_order(theirs))["order_id"] for _ in range(2)} == {
                secondary_order}


async def test_garbage_message_gets_error_frame(venue):
    from tests.fixtures_venue import next_text

    with trio.fail_after(5):
        async with open_websocket_url(ticker_url(venue.ticker_url)) as ws:
            await ws.send_message("not json")
            frame = await next_text(ws)
            assert frame["type"] == "error" and isinstance(frame["data"], str)


@pytest.mark.parametrize("token", ["wrong", "paper-nobody"])
async def test_bad_credentials_refuse_the_upgrade(venue, token):
    with trio.fail_after(5), pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(ticker_url(venue.ticker_url, token=token)):
            pass
    assert rejected.value.status_code == 403


async def test_drop_ticker_closes_sockets(venue, control):
    with trio.fail_after(5):
        async with open_websocket_url(ticker_url(venue.ticker_url)) as ws:
            await control.post("/_venue/faults", json={"drop_ticker": True})
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.get_message()
            assert closed.value.reason.code == 1011
            faults = (await control.get("/_venue/faults")).json()["data"]
            assert "drop_ticker" not in faults  # an action, not a state
        async with open_websocket_url(ticker_url(venue.ticker_url)) as again:
            assert isinstance(await again.get_message(), bytes)


async def test_stall_ticker_sends_nothing_until_cleared(venue, kite, control):
    with trio.fail_after(10):
        await control.post("/_venue/faults", json={"stall_ticker": True})
        async with open_websocket_url(ticker_url(venue.ticker_url)) as ws:
            await place(kite, market_form())
            # longer than the heartbeat period: a stalled socket sends not even heartbeats
            with trio.move_on_after(1.3) as quiet:
                await ws.get_message()
            assert quiet.cancelled_caught and not ws.closed
            await control.delete("/_venue/faults")
            order_id = await place(kite, market_form())
            frame = await next_order(ws)
            assert (frame["order_id"], frame["status"]) == (order_id, "OPEN")


async def test_expired_token_closes_ticker_and_new_token_works(venue, kite, control):
    with trio.fail_after(10):
        async with open_websocket_url(ticker_url(venue.ticker_url)) as ws:
            await control.post("/_venue/accounts/primary/expire")
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.get_message()
            assert closed.value.reason.code == 1008
        assert_error(await kite.get("/orders"), 403, "TokenException")
        with pytest.raises(ConnectionRejected):
            async with open_websocket_url(ticker_url(venue.ticker_url)):
                pass
        token = (await control.post("/_venue/accounts/primary/token")).json()["data"][
            "access_token"]
        async with (
            open_websocket_url(ticker_url(venue.ticker_url, token=token)) as ws,
            kite_http(venue, token=token) as renewed,
        ):
            order_id = await place(renewed, market_form())
            assert (await next_order(ws))["order_id"] == order_id


async def test_cancelling_the_venue_with_an_open_socket_is_fast(nursery):
    scope = trio.CancelScope()
    stopped = trio.Event()
    client_saw_close = trio.Event()

    async def run_venue(*, task_status=trio.TASK_STATUS_IGNORED):
        with scope:
            await serve_venue(TEST_CONFIG, task_status=task_status)
        stopped.set()

    with trio.fail_after(5):
        address = await nursery.start(run_venue)

        async def client(*, task_status=trio.TASK_STATUS_IGNORED):
            async with open_websocket_url(ticker_url(address.ticker_url)) as ws:
                task_status.started()
                try:
                    while True:
                        await ws.get_message()
                except ConnectionClosed:
                    client_saw_close.set()

        await nursery.start(client)
    with trio.fail_after(2):
        scope.cancel()
        await stopped.wait()
        await client_saw_close.wait()
