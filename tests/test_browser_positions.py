"""The positions panel in a real browser: a basket fills, its positions and P&L appear and move
with the venue's price (`/_venue/ltp`); an exit flattens one position, the kill switch the rest,
each after a confirmation naming what it will send. The phone width and dark mode get the same
panel. Outcomes are also checked at the API (`GET /accounts/primary/positions`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from tests.fixtures_browser import (
    TOKENS,
    DeskClient,
    chromium,  # noqa: F401  (a fixture)
    in_browser,
    open_served_desk,
    screenshot,
    sign_in,
)
from tests.fixtures_venue import BANKNIFTY_FUT, NIFTY_FUT

TEST_TIMEOUT_S = 120


def held(client: DeskClient) -> dict[str, int]:
    response = client.http.get("/accounts/primary/positions")
    response.raise_for_status()
    return {p["tradingsymbol"]: p["quantity"] for p in response.json()["positions"]
            if p["quantity"]}


def average(client: DeskClient, symbol: str) -> float:
    response = client.http.get("/accounts/primary/positions")
    return float(next(p["average_price"] for p in response.json()["positions"]
                      if p["tradingsymbol"] == symbol))


def set_ltp(client: DeskClient, symbol: str, price: float) -> None:
    response = client.venue.post("/_venue/ltp", json={f"NFO:{symbol}": price})
    assert response.status_code == 200, response.text


def position_row(page: Any, symbol: str) -> Any:
    return page.locator(f'#positions tr[data-symbol="{symbol}"]')


def row_numbers(page: Any, symbol: str) -> dict[str, float]:
    """The row's qty, avg, ltp and pnl as numbers, read at one instant (the row is updated as a
    whole by each positions message)."""
    cells = page.evaluate(
        "s => Object.fromEntries([...document.querySelectorAll("
        "`#positions tr[data-symbol='${s}'] [data-col]`)]"
        ".map(td => [td.dataset.col, td.textContent]))", symbol)
    return {col: float(text.replace(",", "")) for col, text in cells.items()}


def place_basket(page: Any) -> None:
    """BUY 2 lots of the NIFTY future, SELL 1 of BANKNIFTY, through the basket form."""
    for n, (symbol, side, lots) in enumerate([(NIFTY_FUT, "BUY", 2), (BANKNIFTY_FUT, "SELL", 1)]):
        if n:
            page.get_by_role("button", name="Add leg").click()
        leg = page.locator("#legs .leg").nth(n)
        leg.get_by_label("Symbol").fill(symbol)
        leg.get_by_label("Symbol").press("Tab")
        page.wait_for_function("(el) => el.textContent.includes('lot')",
                               arg=leg.locator(".lot").element_handle())
        leg.get_by_label("Side").select_option(side)
        leg.get_by_label("Lots").fill(str(lots))
    page.get_by_role("button", name="Place basket").click()
    page.get_by_role("button", name="Confirm and place").click()
    page.wait_for_selector('#basket-result[data-status="success"]')


async def test_positions_move_with_the_price_exit_then_kill(
    tmp_path: Path, chromium: str  # noqa: F811
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path) as desk:

            def scenario(page: Any) -> None:
                sign_in(page, desk.base_url, TOKENS["primary"])
                page.wait_for_selector('#link[data-state="live"]')
                place_basket(page)
                nifty, banknifty = position_row(page, NIFTY_FUT), position_row(page, BANKNIFTY_FUT)
                page.wait_for_selector(f'#positions tr[data-symbol="{NIFTY_FUT}"]'
                                       '[data-quantity="150"]')
                page.wait_for_selector(f'#positions tr[data-symbol="{BANKNIFTY_FUT}"]'
                                       '[data-quantity="-35"]')
                with desk.client(TOKENS["primary"]) as client:
                    assert held(client) == {NIFTY_FUT: 150, BANKNIFTY_FUT: -35}
                    cost = average(client, NIFTY_FUT)
                    assert nifty.locator('[data-col="avg"]').inner_text().replace(",", "") == (
                        f"{cost:.2f}")
                    # the price moves: the P&L follows, coloured by its sign
                    set_ltp(client, NIFTY_FUT, cost + 100)
                    page.wait_for_function(
                        "s => document.querySelector(`#positions tr[data-symbol='${s}'] "
                        "[data-col='pnl']`)?.dataset.sign === '+'", arg=NIFTY_FUT)
                    # the venue's price walk may move the price on: P&L as the row's LTP says
                    shown = row_numbers(page, NIFTY_FUT)
                    assert shown["pnl"] == pytest.approx(150 * (shown["ltp"] - cost), abs=0.01)
                    assert "+" in nifty.locator('[data-col="pnl"]').inner_text()
                    set_ltp(client, NIFTY_FUT, cost - 100)
                    page.wait_for_function(
                        "s => document.querySelector(`#positions tr[data-symbol='${s}'] "
                        "[data-col='pnl']`)?.dataset.sign === '-'", arg=NIFTY_FUT)
                    shown = row_numbers(page, NIFTY_FUT)
                    assert shown["pnl"] == pytest.approx(150 * (shown["ltp"] - cost), abs=0.01)
                    assert page.locator("#positions-total").inner_text().startswith(
                        "Total P&L: ")
                    assert banknifty.locator('[data-col="ltp"]').inner_text()
                    screenshot(page, "positions.png", "#positions-card")

                    # exit one: the confirmation names the order, Cancel sends nothing
                    nifty.get_by_role("button", name=f"Exit NFO:{NIFTY_FUT} NRML").click()
                    dialog = page.get_by_role("dialog")
                    assert "market-protected SELL of 150" in dialog.inner_text()
                    dialog.get_by_role("button", name="Cancel").click()
                    assert not dialog.is_visible()
                    assert held(client)[NIFTY_FUT] == 150
                    nifty.get_by_role("button", name=f"Exit NFO:{NIFTY_FUT} NRML").click()
                    dialog.get_by_role("button", name="Send SELL 150").click()
                    page.wait_for_selector('#positions-result[data-status="done"]')
                    page.wait_for_selector(f'#positions tr[data-symbol="{NIFTY_FUT}"]'
                                           '[data-quantity="0"]')
                    assert held(client) == {BANKNIFTY_FUT: -35}
                    assert nifty.get_by_role("button").count() == 0 or (
                        not nifty.locator("button.exit").is_visible())

                    # the kill switch: one open order to cancel, one position to flatten
                    client.place_at_venue(tradingsymbol=NIFTY_FUT, exchange="NFO",
                                          order_type="LIMIT", price="20000", quantity="75",
                                          product="NRML", market_protection="0")
                    page.wait_for_selector('#orders tr[data-status="OPEN"]')
                    page.get_by_role("button", name="Kill switch").click()
                    text = dialog.inner_text()
                    assert "cancels 1 open order and flattens 1 position" in text, text
                    assert f"BUY 35 NFO:{BANKNIFTY_FUT} NRML" in text, text
                    dialog.get_by_role("button", name="Cancel all and flatten").click()
                    page.wait_for_selector('#positions-result h3:text("Kill switch: done")')
                    assert "1 order(s) cancelled" in page.locator("#positions-result").inner_text()
                    assert held(client) == {}
                    page.wait_for_selector(f'#positions tr[data-symbol="{BANKNIFTY_FUT}"]'
                                           '[data-quantity="0"]')
                    assert not page.locator("#positions-error").inner_text()

                # the phone width: the panel scrolls inside itself, never the page
                page.set_viewport_size({"width": 390, "height": 844})
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, f"the page scrolls sideways on a phone: {width}px"
                page.emulate_media(color_scheme="dark")
                background = page.evaluate(
                    "getComputedStyle(document.querySelector('#positions-card'))"
                    ".backgroundColor")
                assert background == "rgb(22, 27, 34)", background  # the dark card

            await in_browser(chromium, scenario)


async def test_an_exit_refused_says_so_in_an_alert(
    tmp_path: Path, chromium: str  # noqa: F811
) -> None:
    """The position is closed elsewhere between the page's view and the click: the exit
    answers 404 and the page says so (role=alert), sending nothing."""
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path) as desk:

            def scenario(page: Any) -> None:
                sign_in(page, desk.base_url, TOKENS["primary"])
                page.wait_for_selector('#link[data-state="live"]')
                with desk.client(TOKENS["primary"]) as client:
                    client.place_at_venue(tradingsymbol=NIFTY_FUT, exchange="NFO",
                                          quantity="75", product="NRML")
                    row = position_row(page, NIFTY_FUT)
                    page.wait_for_selector(f'#positions tr[data-symbol="{NIFTY_FUT}"]'
                                           '[data-quantity="75"]')
                    page.evaluate("() => window.__orderdesk.stream.stop()")  # a stale view
                    client.place_at_venue(tradingsymbol=NIFTY_FUT, exchange="NFO",
                                          quantity="75", product="NRML",
                                          transaction_type="SELL")
                    row.get_by_role("button", name=f"Exit NFO:{NIFTY_FUT} NRML").click()
                    page.get_by_role("dialog").get_by_role("button", name="Send SELL 75").click()
                    alert = page.locator("#positions-error[role=alert]")
                    page.wait_for_function(
                        "() => document.querySelector('#positions-error').textContent !== ''")
                    assert "no open position" in alert.inner_text()
                    assert held(client) == {}

            await in_browser(chromium, scenario)
