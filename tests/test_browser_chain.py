"""The option chain in Chromium (issue 16, item 3): strikes around the money with the venue's
last prices (moving with its market ticks), Buy/Sell buttons that add the right leg to the
ticket, templates that fill it, an iron condor placed in at most 8 clicks, and the chain usable
on a phone without a sideways scroll. The venue's prices stand still during these tests
(`tick_interval_s`), so what the page shows can be compared with what the venue answers.

`ORDERDESK_SCREENSHOTS_DIR=docs .venv/bin/python -m pytest tests/test_browser_chain.py`
refreshes docs/chain.png.
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
from tests.test_browser import expect_live

TEST_TIMEOUT_S = 90
STILL = 3600.0  # no simulation step during a test
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


class Gestures:
    """What the trader does, counted as a person counts clicks: a click is one, picking from a
    drop-down two (open it, pick)."""

    def __init__(self, page: Any) -> None:
        self.page, self.count = page, 0

    def click(self, name: str, **options: Any) -> None:
        self.page.get_by_role("button", name=name, **options).click()
        self.count += 1

    def pick(self, label: str, value: str) -> None:
        self.page.get_by_label(label, exact=True).select_option(value)
        self.count += 2


def chain_of(client: DeskClient, underlying: str = "NIFTY",
             expiry: str | None = None) -> dict[str, Any]:
    query = f"underlying={underlying}" + (f"&expiry={expiry}" if expiry else "")
    response = client.http.get(f"/accounts/primary/option-chain?{query}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def symbol(chain: dict[str, Any], strike: float, kind: str) -> str:
    row = next(r for r in chain["strikes"] if r["strike"] == strike)
    return str(row[kind.lower()]["tradingsymbol"])


def ticket(page: Any) -> list[tuple[str, str, str]]:
    """The ticket's legs as shown: symbol, side, lots."""
    return [tuple(leg) for leg in page.evaluate(
        "() => [...document.querySelectorAll('#legs .leg')].map(li => ['tradingsymbol', "
        "'transaction_type', 'lots'].map(n => li.querySelector(`[name=${n}]`).value))")]


def wait_chain(page: Any, underlying: str, expiry: str | None = None) -> None:
    page.wait_for_function(
        "([u, e]) => document.querySelector('#chain-underlying').value === u"
        " && (!e || document.querySelector('#chain-expiry').value === e)"
        " && document.querySelector('#chain-table tr.atm')"
        " && !document.querySelector('#chain').hasAttribute('aria-busy')", arg=[underlying, expiry])


def record(page: Any, suffix: str) -> list[str]:
    """The URLs of the requests the page makes to paths ending in `suffix` (query aside)."""
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url)
            if r.url.split("?")[0].endswith(suffix) else None)
    return seen


async def test_iron_condor_placed_in_at_most_eight_clicks(
    tmp_path: Path, chromium: str  # noqa: F811
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path, tick_interval_s=STILL) as desk:

            def scenario(page: Any) -> None:
                lookups, batches = record(page, "/instruments"), record(page, "/batch-orders")
                sign_in(page, desk.base_url, TOKENS["primary"])
                expect_live(page)
                with desk.client(TOKENS["primary"]) as client:
                    later = chain_of(client)["expiries"][1]
                    chain = chain_of(client, expiry=later)
                wait_chain(page, "NIFTY")
                trader = Gestures(page)
                trader.pick("Expiry", later)
                wait_chain(page, "NIFTY", later)
                trader.click("Iron condor")
                assert ticket(page) == [
                    (symbol(chain, 23900.0, "PE"), "SELL", "1"),
                    (symbol(chain, 23800.0, "PE"), "BUY", "1"),
                    (symbol(chain, 24100.0, "CE"), "SELL", "1"),
                    (symbol(chain, 24200.0, "CE"), "BUY", "1"),
                ]
                assert "Iron condor: the ticket has 4 legs" in page.locator(
                    "#chain-status").inner_text()
                assert "lot 75" in page.locator("#legs .leg .lot").first.inner_text()
                # the legs written are brought into view, nothing looked up or placed
                box = page.evaluate("(() => { const r = document.querySelector("
                                    "'#legs .leg:nth-child(4)').getBoundingClientRect();"
                                    " return [r.top, r.bottom]; })()")
                assert 0 <= box[0] and box[1] <= page.evaluate("innerHeight") + 1, box
                assert lookups == [] and batches == []
                screenshot(page, "chain.png")

                trader.click("Place basket")
                trader.click("Confirm and place")
                page.wait_for_selector('#basket-result[data-status="success"]')
                assert trader.count <= 8, f"{trader.count} clicks"
                assert len(batches) == 1
                with desk.client(TOKENS["primary"]) as client:
                    placed = {(o["tradingsymbol"], o["transaction_type"], o["quantity"])
                              for o in client.orders()}
                assert placed == {(s, side, 75) for s, side, _ in ticket(page)}
                # a template after a success is a new ticket: placeable, no Repeat offered
                assert page.locator("#basket-submit").is_hidden()
                page.get_by_role("button", name="Straddle").click()
                assert len(ticket(page)) == 2
                assert page.locator("#basket-submit").is_visible()
                assert page.get_by_role("button", name="Repeat").count() == 0

            await in_browser(chromium, scenario)


async def test_buy_sell_buttons_prices_and_templates(
    tmp_path: Path, chromium: str  # noqa: F811
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path, tick_interval_s=STILL) as desk:

            def scenario(page: Any) -> None:
                lookups, chains = record(page, "/instruments"), record(page, "/option-chain")
                sign_in(page, desk.base_url, TOKENS["primary"])
                expect_live(page)
                wait_chain(page, "NIFTY")
                page.wait_for_selector('#chain[data-live="true"]')  # its prices now tick
                assert len(chains) == 1
                with desk.client(TOKENS["primary"]) as client:
                    chain = chain_of(client)
                    atm_call = symbol(chain, 24000.0, "CE")
                    response = client.venue.post("/_venue/ltp", json={f"NFO:{atm_call}": 123.45})
                    assert response.status_code == 200, response.text
                    venue = client.venue.get(
                        "/quote/ltp", params=[("i", f"NFO:{r[k]['tradingsymbol']}")
                                              for r in chain["strikes"] for k in ("ce", "pe")],
                        headers={"X-Kite-Version": "3",
                                 "Authorization": "token paper:paper-primary"}).json()["data"]
                # the market's tick moves the price shown, with no request of the page's
                page.wait_for_function(
                    "() => document.querySelector('#chain-table tr.atm [data-col=ce-ltp]')"
                    ".textContent === '123.45'")
                assert len(chains) == 1
                # every last price shown is the venue's
                shown = page.evaluate(
                    "() => [...document.querySelectorAll('#chain-table tbody tr')].map(tr => "
                    "[...tr.querySelectorAll('button[data-side=BUY]')].map(b => b.dataset.symbol)"
                    ".map((s, i) => [s, tr.querySelectorAll('[data-col$=ltp]')[i].textContent]))"
                    ".flat()")
                assert len(shown) == 22
                for sym, text in shown:
                    assert float(text.replace(",", "")) == venue[f"NFO:{sym}"]["last_price"], sym
                assert page.locator("#chain-table tr.atm th").inner_text() == "24,000"
                assert "NIFTY 24,000.00" in page.locator("#chain-money").inner_text()

                # B on a call replaces the blank leg; S on a put adds a second one
                page.get_by_role("button", name=f"Buy {atm_call}").click()
                assert ticket(page) == [(atm_call, "BUY", "1")]
                put = symbol(chain, 24050.0, "PE")
                page.get_by_role("button", name=f"Sell {put}").click()
                assert ticket(page) == [(atm_call, "BUY", "1"), (put, "SELL", "1")]
                assert page.locator("#chain-status").inner_text() == (
                    f"Added: Sell {put}, 1 lot (leg 2).")

                expected = {
                    "Straddle": [(24000.0, "CE", "BUY"), (24000.0, "PE", "BUY")],
                    "Strangle": [(24100.0, "CE", "BUY"), (23900.0, "PE", "BUY")],
                    "Bull call spread": [(24000.0, "CE", "BUY"), (24100.0, "CE", "SELL")],
                    "Bear put spread": [(24000.0, "PE", "BUY"), (23900.0, "PE", "SELL")],
                }
                for name, legs in expected.items():
                    page.get_by_role("button", name=name).click()
                    assert ticket(page) == [(symbol(chain, k, kind), side, "1")
                                            for k, kind, side in legs], name
                page.get_by_label("Reverse sides").check()
                page.get_by_role("button", name="Straddle").click()
                assert [side for _, side, _ in ticket(page)] == ["SELL", "SELL"]
                assert lookups == [], "the chain gives the ticket its instruments"

                # another underlying: its own strikes and lot
                page.get_by_label("Underlying", exact=True).select_option("BANKNIFTY")
                wait_chain(page, "BANKNIFTY")
                assert page.locator("#chain-table tr.atm th").inner_text() == "52,000"
                assert "lot 35" in page.locator("#chain-money").inner_text()

            await in_browser(chromium, scenario)


async def test_chain_on_a_phone_without_a_sideways_scroll(
    tmp_path: Path, chromium: str  # noqa: F811
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path, tick_interval_s=STILL) as desk:

            def scenario(page: Any) -> None:
                sign_in(page, desk.base_url, TOKENS["primary"])
                expect_live(page)
                wait_chain(page, "NIFTY")
                page.locator("#chain").scroll_into_view_if_needed()
                width = page.evaluate("innerWidth")
                assert page.evaluate("document.documentElement.scrollWidth") <= width
                wrap = page.evaluate("(() => { const w = document.querySelector('.chain-wrap');"
                                     " return [w.scrollWidth, w.clientWidth]; })()")
                assert wrap[0] <= wrap[1], f"the chain scrolls sideways: {wrap}"
                for button in page.locator("#chain-table tr.atm button").all():
                    box = button.bounding_box()
                    assert box["width"] >= 44 and box["height"] >= 44, box  # a thumb's target
                    assert box["x"] >= 0 and box["x"] + box["width"] <= width
                page.get_by_role("button", name="Iron condor").click()
                assert len(ticket(page)) == 4
                atm_put = page.locator("#chain-table tr.atm button[data-side=SELL]").nth(1)
                put = atm_put.get_attribute("data-symbol")
                atm_put.click()  # a thumb's tap adds the fifth leg
                assert ticket(page)[4] == (put, "SELL", "1")
                assert page.evaluate("document.documentElement.scrollWidth") <= width

            await in_browser(chromium, scenario, viewport=PHONE)


#: Elements of `selector` whose text runs over more than one line (an inline box per line).
BROKEN_LINES = """(selector) => [...document.querySelectorAll(selector)]
  .filter((el) => el.getClientRects().length > 1).map((el) => el.textContent)"""


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1440x900", "390x844"])
async def test_buy_sell_after_a_success_starts_a_new_ticket(
    tmp_path: Path, chromium: str, viewport: dict[str, int]  # noqa: F811
) -> None:
    """The merged basket column: after a placed basket, B/S is a new ticket of that one leg
    (as a template or Load is), not a fifth leg of the placed one with Repeat still offered;
    the chain's put side, the Saved controls and each leg's result fit the column."""
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path, tick_interval_s=STILL) as desk:

            def scenario(page: Any) -> None:
                batches = record(page, "/batch-orders")
                sign_in(page, desk.base_url, TOKENS["primary"])
                expect_live(page)
                wait_chain(page, "NIFTY")
                wrap = page.evaluate("(() => { const w = document.querySelector('.chain-wrap');"
                                     " return [w.scrollWidth, w.clientWidth]; })()")
                assert wrap[0] <= wrap[1], f"the put side is cut off: {wrap}"
                # Saved: each field with its buttons on one line, none left alone under it
                tops = page.evaluate(
                    "() => ['name', 'save', 'list', 'load', 'delete'].map((id) =>"
                    " document.querySelector(`#saved-${id}`).getBoundingClientRect().top)")
                assert tops[0] == tops[1] and tops[2] == tops[3] == tops[4], tops
                page.get_by_role("button", name="Iron condor").click()
                page.get_by_role("button", name="Place basket").click()
                page.get_by_role("button", name="Confirm and place").click()
                page.wait_for_selector('#basket-result[data-status="success"]')
                # each leg's symbol and status readable on one line in the narrow column
                assert page.evaluate(BROKEN_LINES, "#basket-result .sym, #basket-result "
                                     ".status, #basket-result .order-id") == []
                assert page.get_by_role("button", name="Repeat").is_visible()

                with desk.client(TOKENS["primary"]) as client:
                    call = symbol(chain_of(client), 24000.0, "CE")
                page.get_by_role("button", name=f"Sell {call}").click()
                assert ticket(page) == [(call, "SELL", "1")]
                assert page.locator("#basket-submit").is_visible()
                assert page.get_by_role("button", name="Repeat").count() == 0
                assert page.locator("#basket-result").is_hidden()  # the placed basket's
                assert page.locator("#chain-status").inner_text() == (
                    f"Added: Sell {call}, 1 lot (leg 1).")
                page.get_by_role("button", name="Place basket").click()
                page.get_by_role("button", name="Confirm and place").click()
                page.wait_for_selector('#basket-result[data-status="success"]')
                assert page.locator("#basket-result tbody tr").count() == 1
                assert len(batches) == 2
                with desk.client(TOKENS["primary"]) as client:
                    assert len(client.orders()) == 5  # the condor's four, then the one call

            await in_browser(chromium, scenario, viewport=viewport)
