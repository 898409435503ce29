"""The official `KiteTicker` pointed at the venue: `on_ticks` in every mode with the fields the
official client decodes, and order updates still through `on_order_update`.

Twisted's reactor runs once per process, so the client runs as a subprocess
(tests/kite_ticker_client.py) printing its callbacks as JSON lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from tests.fixtures_venue import NIFTY_CE, NIFTY_FUT, market_form, place

CLIENT = Path(__file__).with_name("kite_ticker_client.py")
QUOTE_FIELDS = {"tradable", "mode", "instrument_token", "last_price", "last_traded_quantity",
                "average_traded_price", "volume_traded", "total_buy_quantity",
                "total_sell_quantity", "ohlc", "change"}
FULL_FIELDS = QUOTE_FIELDS | {"last_trade_time", "oi", "oi_day_high", "oi_day_low",
                              "exchange_timestamp", "depth"}


class Events:
    """The client's JSON lines, one at a time."""

    def __init__(self, stdout: trio.abc.ReceiveStream) -> None:
        self._stdout, self._buffer = stdout, b""

    async def next(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            chunk = await self._stdout.receive_some()
            assert chunk, f"the client exited: {self._buffer!r}"
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        event: dict[str, Any] = json.loads(line)
        return event

    async def until(self, event: str) -> dict[str, Any]:
        while (found := await self.next())["event"] != event:
            pass
        return found


@asynccontextmanager
async def kite_ticker(root: str, modes: dict[str, list[int]]) -> AsyncIterator[Events]:
    process = await trio.lowlevel.open_process(
        [sys.executable, str(CLIENT), root, "paper", "paper-primary", json.dumps(modes)],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        yield Events(process.stdout)
    finally:
        process.kill()
        await process.wait()


async def test_official_kite_ticker_gets_ticks_in_every_mode_and_order_updates(
        venue, kite, control):
    keys = [f"NFO:{NIFTY_FUT}", f"NFO:{NIFTY_CE}", "NSE:SBIN"]
    data = (await kite.get("/quote/ltp", params={"i": keys})).json()["data"]
    fut, ce, sbin = (data[k]["instrument_token"] for k in keys)
    modes = {"ltp": [sbin], "quote": [ce], "full": [fut]}
    with trio.fail_after(30):
        async with kite_ticker(venue.ticker_url, modes) as events:
            await events.until("connect")
            seen: dict[int, dict[str, Any]] = {}
            while {t: m for t, m in ((t, s["mode"]) for t, s in seen.items())} != {
                    sbin: "ltp", ce: "quote", fut: "full"}:
                for tick in (await events.until("ticks"))["ticks"]:
                    seen[tick["instrument_token"]] = tick
            assert set(seen[sbin]) == {"tradable", "mode", "instrument_token", "last_price"}
            assert seen[sbin]["last_price"] == data["NSE:SBIN"]["last_price"]
            assert set(seen[ce]) == QUOTE_FIELDS
            assert seen[ce]["last_price"] == data[f"NFO:{NIFTY_CE}"]["last_price"]
            assert set(seen[fut]) == FULL_FIELDS
            assert len(seen[fut]["depth"]["buy"]) == len(seen[fut]["depth"]["sell"]) == 5
            assert seen[fut]["tradable"] is True

            await control.post("/_venue/ltp", json={f"NFO:{NIFTY_FUT}": 24_033.45})
            while not any(t["instrument_token"] == fut and t["last_price"] == 24_033.45
                          for t in (await events.until("ticks"))["ticks"]):
                pass

            order_id = await place(kite, market_form())
            statuses = []
            while statuses[-1:] != ["COMPLETE"]:
                update = (await events.until("order"))["data"]
                assert update["order_id"] == order_id
                statuses.append(update["status"])
            assert statuses == ["OPEN", "COMPLETE"]
