"""bench/ticks.py --gateway: market ticks through the whole service, N accounts each holding the
same instruments (see bench/ticks.py)."""

from __future__ import annotations

import datetime as dt
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio
from _fanout_stack import open_venue

import brokers.kite as kite
from brokers.paper.config import IST
from brokers.paper.instruments import builtin_master
from supervision.service import open_service
from supervision.settings import load_settings


def _options(n: int) -> list[str]:
    """`n` NIFTY options of the nearest expiry, calls and puts around the money."""
    master = builtin_master(dt.datetime.now(IST).date(), {})
    options = [i for i in master.instruments if i.name == "NIFTY" and i.is_option]
    expiry = min(i.expiry for i in options if i.expiry is not None)
    near = sorted((i for i in options if i.expiry == expiry),
                  key=lambda i: (abs(i.strike - 24000.0), i.tradingsymbol))
    return [i.tradingsymbol for i in near[:n]]


def _gateway_toml(work: Path, rest: str, accounts: list[str]) -> str:
    ticker = "ws" + rest.removeprefix("http") + "/"
    lines = ['[server]', 'bind = "127.0.0.1:0"', 'admin_token = "bench-admin"', '',
             '[database]', f'url = "sqlite:///{work}/ticks.db"', '']
    for account in accounts:
        lines += ['[[accounts]]', f'id = "{account}"', 'broker = "paper"',
                  f'rest_url = "{rest}"', f'ticker_url = "{ticker}"',
                  f'tokens = ["bench-{account}"]', '']
    return "\n".join(lines)


async def _hold(rest: str, account: str, symbols: list[str]) -> None:
    """The account buys one lot of each symbol at the venue."""
    headers = {"X-Kite-Version": "3", "Authorization": f"token paper:paper-{account}"}
    async with httpx.AsyncClient(base_url=rest, timeout=30, headers=headers) as venue:
        for symbol in symbols:
            form = {"exchange": "NFO", "tradingsymbol": symbol, "transaction_type": "BUY",
                    "order_type": "MARKET", "quantity": 75, "product": "NRML",
                    "market_protection": -1, "validity": "DAY"}
            response = await venue.post("/orders/regular", data=form)
            assert response.status_code == 200, response.text


class _Counted:
    """`decode_prices` as the Kite adapter calls it, counting frames and ticks."""

    def __init__(self) -> None:
        self.frames = 0
        self.ticks = 0
        self._decode = kite.decode_prices

    def __call__(self, data: bytes) -> list[Any]:
        ticks = self._decode(data)
        self.frames += 1
        self.ticks += len(ticks)
        return ticks


async def measure_gateway(accounts: int, held: int, seconds: float) -> dict[str, Any]:
    ids = [f"a{k:04d}" for k in range(accounts)]
    symbols = _options(held)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        async with open_venue(work, ids) as rest:
            limiter = trio.CapacityLimiter(16)

            async def hold(account: str) -> None:
                async with limiter:
                    await _hold(rest, account, symbols)

            async with trio.open_nursery() as nursery:
                for account in ids:
                    nursery.start_soon(hold, account)
            config = work / "orderdesk.toml"
            config.write_text(_gateway_toml(work, rest, ids))
            settings = load_settings(str(config), environ={"ORDERDESK_VAR": str(work / "var")})
            counted = _Counted()
            kite.decode_prices = counted  # type: ignore[assignment]
            try:
                async with open_service(settings) as running:
                    with trio.fail_after(120):  # every account subscribed to what it holds
                        for actor in running.actors.values():
                            await actor.live.until(lambda a=actor: len(a.live.subscribed) >= held)
                    gc.freeze()  # as `orderdesk serve` does after start-up
                    await trio.sleep(2.0)  # the snapshots after subscribing
                    frames, ticks = counted.frames, counted.ticks
                    print(f"measuring for {seconds:g} s", file=sys.stderr, flush=True)
                    cpu, wall = time.process_time(), time.perf_counter()
                    await trio.sleep(seconds)
                    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                    frames, ticks = counted.frames - frames, counted.ticks - ticks
            finally:
                kite.decode_prices = counted._decode  # type: ignore[assignment]
    expected = accounts * held / 1.0  # each instrument ticks once a second, on each connection
    return {
        "bench": "ticks", "side": "gateway", "accounts": accounts, "held": held,
        "accounts_per_instrument": accounts, "seconds": round(wall, 2),
        "ticks_per_s": round(ticks / wall), "expected_ticks_per_s": round(expected),
        "frames_per_s": round(frames / wall, 1),
        "decodes_per_tick_and_connection": round(ticks / wall / expected, 2),
        "cpu_share": round(cpu / wall, 3),
        "cpu_us_per_tick": round(cpu / ticks * 1e6, 2) if ticks else None,
    }
