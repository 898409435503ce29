"""Market ticks on the venue's ticker: Kite's subscribe/unsubscribe/mode messages, the binary
frames they bring (decoded with `brokers.kite_ticks`, itself tested against the official
client), Kite's limits, and order updates unchanged alongside."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
from trio_websocket import ConnectionRejected, WebSocketConnection, open_websocket_url

from brokers.kite_ticks import Segment, Tick, decode_frame
from tests.fixtures_venue import (
    NIFTY_CE,
    NIFTY_FUT,
    market_form,
    next_order,
    place,
    start_venue,
    ticker_url,
)


async def tokens_of(kite: httpx.AsyncClient, *keys: str) -> list[int]:
    data = (await kite.get("/quote/ltp", params={"i": list(keys)})).json()["data"]
    return [data[k]["instrument_token"] for k in keys]


async def next_ticks(ws: WebSocketConnection) -> list[Tick]:
    """The next binary frame that carries ticks, skipping heartbeats and text (bounded at 5 s)."""
    with trio.fail_after(5):
        while True:
            message = await ws.get_message()
            if isinstance(message, bytes) and len(message) > 1:
                return decode_frame(message)


async def next_error(ws: WebSocketConnection) -> str:
    with trio.fail_after(5):
        while True:
            message = await ws.get_message()
            if isinstance(message, str) and json.loads(message)["type"] == "error":
                text: str = json.loads(message)["data"]
                return text


async def send(ws: WebSocketConnection, action: str, value: object) -> None:
    await ws.send_message(json.dumps({"a": action, "v": value}))


async def test_instrument_tokens_carry_their_segment(kite):
    fut, ce, sbin = await tokens_of(kite, f"NFO:{NIFTY_FUT}", f"NFO:{NIFTY_CE}", "NSE:SBIN")
    assert [fut & 0xFF, ce & 0xFF, sbin & 0xFF] == [Segment.NFO, Segment.NFO, Segment.NSE]


async def test_subscribe_sends_quote_snapshot_then_price_changes(venue, kite, control):
    (fut,) = await tokens_of(kite, f"NFO:{NIFTY_FUT}")
    with trio.fail_after(10):
        async with open_websocket_url(ticker_url(venue.ticker_url)) as ws:
            await send(ws, "subscribe", [fut])
            (tick,) = await next_ticks(ws)
            assert (tick.instrument_token, tick.mode, tick.last_price) == (fut, "quote", 24000.0)
            assert tick.ohlc is not None and tick.ohlc.close == 24000.0
            assert tick.total_buy_quantity and tick.total_sell_quantity
            await control.post("/_venue/ltp", json={f"NFO:{NIFTY_FUT}": 24012.35})
            (tick,) = await next_ticks(ws)
            assert (tick.mode, tick.last_price) == ("quote", 24012.35)
            assert tick.change == pytest.approx((24012.35 - 24000) * 100 / 24000)
            assert tick.ohlc is not None and tick.ohlc.high == 24012.35


async def test_modes_and_unsubscribe(venue, kite, control):
    fut, ce = await tokens_of(kite, f"NFO:{NIFTY_FUT}", f"NFO:{NIFTY_CE}")
    with trio.fail_after(10):
        async with open_websocket_url(ticker_url(venue.ticker_url)) as ws:
            await send(ws, "subscribe", [fut, ce])
            assert {t.instrument_token for t in await next_ticks(ws)} == {fut, ce}
            await send(ws, "mode", ["full", [fut]])
            (full,) = await next_ticks(ws)
            assert (full.instrument_token, full.mode) == (fut, "full")
            assert full.depth is not None and len(full.depth.buy) == len(full.depth.sell) == 5
            assert full.depth.buy[0].price < full.last_price < full.depth.sell[0].price
            assert full.exchange_timestamp and full.last_trade_time
            await send(ws, "mode", ["ltp", [ce]])
            (ltp,) = await next_ticks(ws)
            assert (ltp.instrument_token, ltp.mode, ltp.ohlc) == (ce, "ltp", None)
            await send(ws, "unsubscribe", [fut])
            await control.post("/_venue/ltp", json={f"NFO:{NIFTY_FUT}": 24100,
                                                    f"NFO:{NIFTY_CE}": 150})
            assert [(t.instrument_token, t.last_price) for t in await next_ticks(ws)] == [
                (ce, 150.0)]


async def test_simulation_steps_send_ticks(nursery):
    venue = await start_venue(nursery, tick_interval_s=0.05)
    async with httpx.AsyncClient(base_url=venue.rest_url, timeout=10.0,
                                 headers={"X-Kite-Version": "3",
                                          "Authorization": "token paper:paper-primary"}) as kite:
        (sbin,) = await tokens_of(kite, "NSE:SBIN")
    with trio.fail_after(10):
        async with open_websocket_url(ticker_url(venue.ticker_url)) as ws:
            await send(ws, "subscribe", [sbin])
            await send(ws, "mode", ["ltp", [sbin]])
            prices = set()
            while len(prices) < 3:  # the walk moves the price every step
                prices |= {t.last_price for t in await next_ticks(ws)}


async def test_order_updates_still_arrive_as_text(venue, kite):
    (fut,) = await tokens_of(kite, f"NFO:{NIFTY_FUT}")
    with trio.fail_after(10):
        async with open_websocket_url(ticker_url(venue.ticker_url)) as ws:
            await send(ws, "subscribe", [fut])
            await next_ticks(ws)
            order_id = await place(kite, market_form())
            frames = [await next_order(ws) for _ in range(2)]
            assert [(f["order_id"], f["status"]) for f in frames] == [
                (order_id, "OPEN"), (order_id, "COMPLETE")]


async def test_bad_messages_get_error_frames(venue):
    with trio.fail_after(10):
        async with open_websocket_url(ticker_url(venue.ticker_url)) as ws:
            await send(ws, "mode", ["fastest", [256265]])
            assert "mode" in await next_error(ws)
            await send(ws, "subscribe", "256265")
            assert "instrument tokens" in await next_error(ws)
            await ws.send_message("not json")
            assert await next_error(ws) == "Invalid message: expected JSON object."


async def test_3000_instruments_per_connection(venue, kite):
    (sbin,) = await tokens_of(kite, "NSE:SBIN")
    unlisted = list(range(1_000_000_001, 1_000_003_000))  # 2,999 tokens the venue does not list
    with trio.fail_after(10):
        async with open_websocket_url(ticker_url(venue.ticker_url)) as ws:
            await send(ws, "subscribe", unlisted)
            await send(ws, "subscribe", [sbin, sbin + 256])  # 3,001: refused whole
            assert "at most 3000 instruments" in await next_error(ws)
            await send(ws, "subscribe", [sbin])  # 3,000: fine
            assert [t.instrument_token for t in await next_ticks(ws)] == [sbin]


async def test_3_connections_per_api_key_and_user(venue):
    url = ticker_url(venue.ticker_url)
    with trio.fail_after(10):
        async with open_websocket_url(url), open_websocket_url(url):
            async with open_websocket_url(url):
                with pytest.raises(ConnectionRejected) as refused:
                    async with open_websocket_url(url):
                        pass
                assert refused.value.status_code == 429
                body = json.loads(refused.value.body)
                assert body["error_type"] == "NetworkException"
                async with open_websocket_url(ticker_url(venue.ticker_url, "secondary")):
                    pass  # another user of the same API key has connections of its own
            async with open_websocket_url(url):
                pass  # one closed: there is room again


async def test_a_stalled_ticker_holds_ticks_then_sends_the_latest(venue, kite, control):
    (fut,) = await tokens_of(kite, f"NFO:{NIFTY_FUT}")
    with trio.fail_after(10):
        await control.post("/_venue/faults", json={"stall_ticker": True})
        async with open_websocket_url(ticker_url(venue.ticker_url)) as ws:
            await send(ws, "subscribe", [fut])
            for price in (24_001, 24_002):
                await control.post("/_venue/ltp", json={f"NFO:{NIFTY_FUT}": price})
            with trio.move_on_after(0.3) as quiet:
                await ws.get_message()
            assert quiet.cancelled_caught
            await control.delete("/_venue/faults")
            assert [(t.instrument_token, t.last_price) for t in await next_ticks(ws)] == [
                (fut, 24_002.0)]
