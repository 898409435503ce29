"""The Kite adapter against the paper venue over loopback: every call, every error type."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from brokers.base import (
    BrokerUnavailable,
    Order,
    OrderRejected,
    OrderRequest,
    RateLimited,
    TokenExpired,
    UpstreamLost,
)
from brokers.kite import KiteBroker, KiteSettings
from brokers.paper import VenueAddress
from brokers.ticker_reader import TickerReader
from tests.fixtures_venue import start_venue

FUT = "NIFTY26DECFUT"


def market(side: str = "BUY", qty: int = 75, symbol: str = FUT, **kw) -> OrderRequest:
    return OrderRequest(symbol, "NFO", side, "MARKET", qty, "NRML", market_protection=-1, **kw)


def broker_for(
    venue: VenueAddress, account: str = "primary", reader: TickerReader | None = None, **kw,
) -> KiteBroker:
    settings = KiteSettings(
        api_key="paper",
        access_token=kw.pop("token", f"paper-{account}"),
        rest_url=venue.rest_url,
        ticker_url=venue.ticker_url,
        **kw,
    )
    return KiteBroker(settings, reader=reader)


@pytest.fixture
async def broker(venue: VenueAddress) -> AsyncIterator[KiteBroker]:
    b = broker_for(venue)
    try:
        yield b
    finally:
        await b.aclose()


async def next_order(stream, order_id: str) -> Order:
    async for order in stream:
        if order.order_id == order_id:
            return order
    raise AssertionError("stream ended")


async def test_place_list_history_positions(broker: KiteBroker) -> None:
    with trio.fail_after(10):
        order_id = await broker.place(market(tag="t1"))
        assert len(order_id) == 15 and order_id.isdigit()
        listed = {o.order_id: o for o in await broker.orders()}
        assert listed[order_id].status == "COMPLETE"
        assert listed[order_id].tag == "t1"
        assert listed[order_id].filled_quantity == 75
        history = await broker.order_history(order_id)
        statuses = [o.status for o in history]
        assert statuses[0] == "PUT ORDER REQ RECEIVED" and statuses[-1] == "COMPLETE"
        positions = {p.tradingsymbol: p for p in await broker.positions()}
        assert positions[FUT].quantity == 75


async def test_stream_delivers_each_status_in_order(broker: KiteBroker) -> None:
    with trio.fail_after(10):
        async with broker.open_stream() as stream:
            order_id = await broker.place(market())
            seen = []
            async for order in stream:
                if order.order_id == order_id:
                    seen.append(order.status)
                    if order.is_final:
                        break
        assert seen == ["OPEN", "COMPLETE"]


async def test_limit_modify_cancel(broker: KiteBroker, control: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        price = (await broker.ltp([f"NFO:{FUT}"]))[f"NFO:{FUT}"]
        low = round(round(price * 0.9 / 0.05) * 0.05, 2)
        request = OrderRequest(FUT, "NFO", "BUY", "LIMIT", 75, "NRML", price=low)
        async with broker.open_stream() as stream:
            order_id = await broker.place(request)
            assert (await next_order(stream, order_id)).status == "OPEN"
            await broker.modify(order_id, price=round(low - 1, 2))
            modified = [o for o in await broker.orders() if o.order_id == order_id][0]
            assert modified.price == pytest.approx(low - 1)
            assert await broker.cancel(order_id) == order_id
            statuses = []
            async for order in stream:
                if order.order_id == order_id:
                    statuses.append(order.status)
                    if order.is_final:
                        break
            assert statuses[-1] == "CANCELLED"
        with pytest.raises(OrderRejected):
            await broker.cancel(order_id)  # cancelling a cancelled order is Kite's InputException


async def test_rejections_are_typed(broker: KiteBroker) -> None:
    with trio.fail_after(10):
        with pytest.raises(OrderRejected) as bad_lot:
            await broker.place(market(qty=10))
        assert bad_lot.value.error_type == "InputException"
        assert bad_lot.value.status == 400
        with pytest.raises(OrderRejected):
            await broker.place(market(symbol="NOSUCHSYMBOL"))
        unprotected = OrderRequest(FUT, "NFO", "BUY", "MARKET", 75, "NRML")
        with pytest.raises(OrderRejected, match="market protection"):
            await broker.place(unprotected)


async def test_bad_token_is_token_expired(venue: VenueAddress) -> None:
    b = broker_for(venue, token="wrong")
    try:
        with trio.fail_after(10):
            with pytest.raises(TokenExpired):
                await b.orders()
            with pytest.raises(TokenExpired):
                async with b.open_stream() as stream:
                    async for _ in stream:
                        pass
    finally:
        await b.aclose()


async def test_expired_token_then_new_one(
    broker: KiteBroker, control: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        async with broker.open_stream() as stream:
            (await control.post("/_venue/accounts/primary/expire")).raise_for_status()
            with pytest.raises((TokenExpired, UpstreamLost)):
                async for _ in stream:
                    pass
        with pytest.raises(TokenExpired):
            await broker.orders()
        issued = await control.post("/_venue/accounts/primary/token")
        token = issued.json()["data"]["access_token"]
        broker.set_access_token(token)
        assert isinstance(await broker.orders(), list)


async def test_server_error_and_timeout_are_unavailable(
    broker: KiteBroker, venue: VenueAddress, control: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        await control.post("/_venue/faults", json={"fail_nth_order": 1})
        with pytest.raises(BrokerUnavailable):
            await broker.place(market())
        await control.delete("/_venue/faults")
        await control.post("/_venue/faults", json={"latency_ms": 1500})
        slow = broker_for(venue, timeout_s=0.3)
        try:
            with pytest.raises(BrokerUnavailable, match="outcome unknown"):
                await slow.place(market(tag="slow1"))
        finally:
            await slow.aclose()
        await control.delete("/_venue/faults")
        tags = [o.tag for o in await broker.orders()]
        assert tags.count("slow1") == 1  # accepted before the latency: found by its tag


async def test_unreachable_broker(venue: VenueAddress) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    b = KiteBroker(KiteSettings("paper", "paper-primary", f"http://127.0.0.1:{port}",
                                f"ws://127.0.0.1:{port}/", timeout_s=1))
    try:
        with trio.fail_after(10):
            with pytest.raises(BrokerUnavailable):
                await b.orders()
            with pytest.raises(UpstreamLost):
                async with b.open_stream():
                    pass
    finally:
        await b.aclose()


async def test_rate_limited(nursery: trio.Nursery) -> None:
    address = await start_venue(nursery, rate_limit_per_s=2)
    b = broker_for(address)
    try:
        with trio.fail_after(10):
            errors = []
            for _ in range(4):
                try:
                    await b.place(market())
                except RateLimited as exc:
                    errors.append(exc)
            assert errors and errors[0].status == 429
    finally:
        await b.aclose()


async def test_stalled_and_dropped_ticker_are_lost(
    venue: VenueAddress, control: httpx.AsyncClient, reader: TickerReader | None,
) -> None:
    b = broker_for(venue, reader=reader, stall_timeout_s=0.5)
    try:
        with trio.fail_after(10):
            async with b.open_stream() as stream:
                await control.post("/_venue/faults", json={"stall_ticker": True})
                with pytest.raises(UpstreamLost, match="no frame"):
                    async for _ in stream:
                        pass
            await control.delete("/_venue/faults")
            async with b.open_stream() as stream:
                await control.post("/_venue/faults", json={"drop_ticker": True})
                with pytest.raises(UpstreamLost, match="closed"):
                    async for _ in stream:
                        pass
    finally:
        await b.aclose()


async def test_heartbeats_keep_a_stream_past_many_stall_timeouts(
    venue: VenueAddress, reader: TickerReader | None,
) -> None:
    """The stall watch rolls over while heartbeats (1 s apart) come: 1.2 s of stall
    timeout, 3.5 s of heartbeats only, no loss."""
    b = broker_for(venue, reader=reader, stall_timeout_s=1.2)
    try:
        with trio.fail_after(10):
            async with b.open_stream() as stream:
                with trio.move_on_after(3.5) as quiet:
                    async for order in stream:
                        raise AssertionError(f"no order was placed: {order}")
                assert quiet.cancelled_caught
                assert stream.last_frame_at is not None
    finally:
        await b.aclose()


async def test_a_consumer_busy_elsewhere_is_no_stall(
    venue: VenueAddress, reader: TickerReader | None,
) -> None:
    """Frames that waited for a busy consumer longer than the stall timeout are read, not
    taken for a dead ticker (the shared reader reads them meanwhile)."""
    b = broker_for(venue, reader=reader, stall_timeout_s=1.2)
    try:
        with trio.fail_after(10):
            async with b.open_stream() as stream:
                await trio.sleep(2.0)  # the consumer is busy: heartbeats wait for it
                with trio.move_on_after(1.5) as quiet:
                    async for order in stream:
                        raise AssertionError(f"no order was placed: {order}")
                assert quiet.cancelled_caught
    finally:
        await b.aclose()


async def _accept_and_say_nothing(
    held: list[trio.SocketStream], *, task_status: trio.TaskStatus[int]
) -> None:
    """A ticker that takes the TCP connection and never answers the handshake."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    async with listeners[0]:
        while True:
            held.append(await listeners[0].accept())


async def test_a_handshake_that_never_ends_is_lost_not_hung(nursery: trio.Nursery) -> None:
    """trio-websocket's connect timeout leaves its reader running, and its nursery waits for
    it: without the adapter's own deadline an account whose handshake timed out (a loaded
    broker, a loaded gateway) waits forever, silently."""
    held: list[trio.SocketStream] = []
    port = await nursery.start(_accept_and_say_nothing, held)
    b = KiteBroker(KiteSettings(api_key="paper", access_token="paper-primary",
                                rest_url=f"http://127.0.0.1:{port}",
                                ticker_url=f"ws://127.0.0.1:{port}", timeout_s=0.3))
    try:
        with trio.fail_after(10):
            with pytest.raises(UpstreamLost, match="ticker (handshake timed out|unreachable)"):
                async with b.open_stream():
                    raise AssertionError("the handshake was never answered")
        assert held  # the connection was taken, and the handshake never answered
    finally:
        await b.aclose()


async def test_margins_instruments_ltp(broker: KiteBroker) -> None:
    with trio.fail_after(10):
        margin = await broker.basket_margins([market(), market("SELL")])
        assert margin.initial > 0 and margin.final <= margin.initial
        instruments = {i.tradingsymbol: i for i in await broker.instruments("NFO")}
        assert instruments[FUT].lot_size == 75
        assert instruments[FUT].tick_size == pytest.approx(0.05)
        prices = await broker.ltp([f"NFO:{FUT}"])
        assert prices[f"NFO:{FUT}"] > 0
        assert await broker.available_funds() > 0
