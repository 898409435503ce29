"""`GET /accounts/{id}/option-chain` over HTTP against the whole service and the paper venue:
strikes around the money with the venue's own last prices, the money following the future,
and every bad parameter a 422 naming it (issue 16, item 3)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import trio

from actors.calendar import IST
from brokers.paper.instruments import builtin_master
from tests.fixtures_browser import ADMIN_TOKEN, TOKENS, ServedDesk, open_served_desk
from tests.fixtures_service import api, open_test_service, venue_control
from tests.fixtures_venue import NIFTY_FUT

TEST_TIMEOUT_S = 60
CHAIN = "/accounts/primary/option-chain"
#: The venue's prices stay where the test sets them (no simulation step during a test).
STILL = 3600.0


def bearer(token: str = TOKENS["primary"]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def venue_ltp(desk: ServedDesk, symbols: list[str]) -> dict[str, float]:
    """The venue's own answer to Kite's quote call."""
    async with httpx.AsyncClient(base_url=desk.venue_url, timeout=10.0) as venue:
        response = await venue.get("/quote/ltp", params=[("i", f"NFO:{s}") for s in symbols],
                                   headers={"X-Kite-Version": "3",
                                            "Authorization": "token paper:paper-primary"})
    assert response.status_code == 200, response.text
    return {k.partition(":")[2]: v["last_price"] for k, v in response.json()["data"].items()}


async def set_venue_ltp(desk: ServedDesk, prices: dict[str, float]) -> None:
    async with httpx.AsyncClient(base_url=desk.venue_url, timeout=10.0) as venue:
        response = await venue.post("/_venue/ltp",
                                    json={f"NFO:{s}": p for s, p in prices.items()})
    assert response.status_code == 200, response.text


def fields(response: httpx.Response) -> list[tuple[str, str]]:
    assert response.status_code == 422, response.text
    return [(f["path"], f["rule"]) for f in response.json()["fields"]]


async def test_chain_around_the_money_with_the_venues_prices(tmp_path: Path) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path, tick_interval_s=STILL) as desk, \
                httpx.AsyncClient(base_url=desk.base_url, timeout=10.0) as http:
            response = await http.get(f"{CHAIN}?underlying=nifty", headers=bearer())
            assert response.status_code == 200, response.text
            chain: dict[str, Any] = response.json()
            assert chain["underlying"] == "NIFTY" and chain["exchange"] == "NFO"
            assert chain["underlyings"] == ["BANKNIFTY", "NIFTY"]
            assert len(chain["expiries"]) == 2 and chain["expiry"] == chain["expiries"][0]
            assert chain["priced_from"] == NIFTY_FUT
            assert chain["underlying_price"] == 24000.0 and chain["atm_strike"] == 24000.0
            assert chain["lot_size"] == 75 and chain["tick_size"] == 0.05
            strikes = [row["strike"] for row in chain["strikes"]]
            assert strikes == [24000.0 + 50 * k for k in range(-5, 6)]  # 5 each side
            symbols = [row[side]["tradingsymbol"] for row in chain["strikes"]
                       for side in ("ce", "pe")]
            assert symbols[0] == NIFTY_FUT.removesuffix("FUT") + "23750CE"
            venue = await venue_ltp(desk, symbols)
            shown = {row[side]["tradingsymbol"]: row[side]["last_price"]
                     for row in chain["strikes"] for side in ("ce", "pe")}
            assert shown == venue

            # the money follows the future; a price set at the venue shows at once
            stem = NIFTY_FUT.removesuffix("FUT")
            await set_venue_ltp(desk, {NIFTY_FUT: 24130.0, f"{stem}24150CE": 123.45})
            moved = (await http.get(f"{CHAIN}?underlying=NIFTY&strikes=2",
                                    headers=bearer())).json()
            assert moved["underlying_price"] == 24130.0 and moved["atm_strike"] == 24150.0
            assert [r["strike"] for r in moved["strikes"]] == [24050.0, 24100.0, 24150.0,
                                                                24200.0, 24250.0]
            assert moved["strikes"][2]["ce"] == {"tradingsymbol": f"{stem}24150CE",
                                                 "last_price": 123.45}

            later = chain["expiries"][1]
            second = (await http.get(f"{CHAIN}?underlying=BANKNIFTY&expiry={later}",
                                     headers=bearer(ADMIN_TOKEN))).json()
            assert second["expiry"] == later and second["lot_size"] == 35
            assert second["atm_strike"] == 52000.0
            assert second["strikes"][0]["ce"]["tradingsymbol"].startswith("BANKNIFTY")


async def test_chain_bad_parameters_name_the_field(tmp_path: Path) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path, tick_interval_s=STILL) as desk, \
                httpx.AsyncClient(base_url=desk.base_url, timeout=10.0) as http:
            async def get(query: str, token: str | None = TOKENS["primary"],
                          path: str = CHAIN) -> httpx.Response:
                return await http.get(f"{path}?{query}",
                                      headers=bearer(token) if token else {})

            assert fields(await get("")) == [("underlying", "required")]
            assert fields(await get("underlying=NI FTY")) == [("underlying", "format")]
            assert fields(await get("underlying=NIFTY&strikes=0")) == [("strikes", "range")]
            assert fields(await get("underlying=NIFTY&strikes=abc")) == [("strikes", "range")]
            assert fields(await get("underlying=NIFTY&strikes=21")) == [("strikes", "range")]
            assert fields(await get("underlying=NIFTY&expiry=2026-13-01")) == [
                ("expiry", "format")]
            assert fields(await get("expiry=tomorrow&strikes=-1")) == [
                ("underlying", "required"), ("expiry", "format"), ("strikes", "range")]

            unknown = await get("underlying=NOSUCH")
            assert fields(unknown) == [("underlying", "unknown")]
            message = unknown.json()["fields"][0]["message"]
            assert "'NOSUCH'" in message and "BANKNIFTY, NIFTY" in message
            no_expiry = await get("underlying=NIFTY&expiry=2001-01-02")
            assert fields(no_expiry) == [("expiry", "unknown")]
            assert "expiries: 20" in no_expiry.json()["fields"][0]["message"]

            assert (await get("underlying=NIFTY", token=None)).status_code == 401
            assert (await get("underlying=NIFTY", token=TOKENS["secondary"])).status_code == 403
            assert (await get("underlying=NIFTY",
                              path="/accounts/nobody/option-chain")).status_code == 404


async def test_chain_without_futures_is_priced_by_parity(tmp_path: Path) -> None:
    """A master without the underlying's futures (as Kite's weekly expiries have none): the
    money is where the call and the put cost the same, strike + call - put."""
    rows = builtin_master(dt.datetime.now(IST).date(), {}).to_csv().splitlines()
    master = tmp_path / "instruments.csv"
    master.write_text("\n".join(r for r in rows if ",FUT," not in r) + "\n", encoding="utf-8")
    venue_toml = f'instruments_csv = "{master}"\ntick_interval_s = {STILL}'
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_test_service(tmp_path, venue_toml=venue_toml) as running, \
                api(running) as http, venue_control(running) as venue:
            chain = (await http.get(f"{CHAIN}?underlying=NIFTY")).json()
            assert chain["priced_from"] == "parity"
            assert chain["underlying_price"] == 24000.0 and chain["atm_strike"] == 24000.0
            stem = chain["strikes"][0]["ce"]["tradingsymbol"][:-7]  # NIFTY26DEC
            moved = await venue.post("/_venue/ltp", json={
                f"NFO:{stem}24000CE": 150.0, f"NFO:{stem}24050CE": 100.0,
                f"NFO:{stem}24050PE": 99.0})
            assert moved.status_code == 200, moved.text
            again = (await http.get(f"{CHAIN}?underlying=NIFTY&strikes=1")).json()
            assert again["underlying_price"] == 24051.0 and again["atm_strike"] == 24050.0
            assert [r["strike"] for r in again["strikes"]] == [24000.0, 24050.0, 24100.0]
