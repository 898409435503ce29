"""Issue 16 items 4 and 7 in a real browser: modify an open order from its blotter row (the result
in the row), and a desk readable at 1440×900 and on a 390×844 phone: ids, tags and rollbacks not
cut off, no sideways scroll, 44 px tap targets, times in IST, the token's name, and a freeze-limit
error in lots with the offer to split the leg."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.fixtures_browser import (
    TOKEN_NAMES,
    TOKENS,
    chromium,  # noqa: F401  (a fixture)
    in_browser,
    open_served_desk,
    screenshot,
    sign_in,
)
from tests.fixtures_venue import NIFTY_FUT
from tests.test_browser import (
    TEST_TIMEOUT_S,
    cell,
    expect_live,
    fill_leg,
    place_and_confirm,
    place_resting,
    row,
)

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}

#: Every visible control narrower or shorter than 44 px (a checkbox or radio counts by its
#: label, which is what a thumb taps).
SMALL_TARGETS = """() => [...document.querySelectorAll(
    'button, select, input, a[href], summary')].filter((el) => {
  const target = ['checkbox', 'radio'].includes(el.type) ? el.closest('label') : el;
  const box = target.getBoundingClientRect();
  const shown = box.width > 0 && box.height > 0 && getComputedStyle(target).visibility
    !== 'hidden' && !el.closest('[hidden]') && !el.classList.contains('skip');
  return shown && (box.height < 44 || box.width < 44);
}).map((el) => { const box = el.getBoundingClientRect();
  return `${el.tagName} ${el.id || el.name || el.className}: ${box.width}x${box.height}`; })"""

#: Cells whose text runs past their own box, or past the right edge of their scroll container's
#: visible part (a sideways scroll would be needed to read them).
CUT_OFF = """(selector) => [...document.querySelectorAll(selector)].filter((el) => {
  const wrap = el.closest('.table-wrap').getBoundingClientRect();
  const box = el.getBoundingClientRect();
  return el.scrollWidth > el.clientWidth + 1 || box.right > wrap.right + 1
    || box.left < wrap.left - 1;
}).map((el) => `${el.dataset.col || el.className}: ${el.textContent}`)"""


def _no_sideways_scroll(page: Any, selector: str) -> None:
    wide = page.evaluate("(s) => { const el = document.querySelector(s);"
                         " return [el.scrollWidth, el.clientWidth]; }", selector)
    assert wide[0] <= wide[1], f"{selector} scrolls sideways: {wide}"


# -- item 4: modify from the row ----------------------------------------------------------


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1440x900", "390x844"])
async def test_modify_an_open_order_from_its_row(
    tmp_path: Path, chromium: str, viewport: dict[str, int]  # noqa: F811
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path) as desk:

            def scenario(page: Any) -> None:
                sign_in(page, desk.base_url, TOKENS["primary"])
                expect_live(page)
                with desk.client(TOKENS["primary"]) as client:
                    filled = client.place_at_venue(symbol="SBIN")
                    row(page, filled, "COMPLETE")
                    resting = place_resting(client)
                    open_row = row(page, resting, "OPEN")
                    assert not row(page, filled).get_by_role("button", name=re.compile(
                        "Modify")).is_visible()  # a final order offers no modify
                    open_row.get_by_role("button", name=f"Modify order {resting}").click()
                    editor = page.locator(f'tr.modify-row[data-editor-for="{resting}"]')
                    price = editor.get_by_label("New price")
                    quantity = editor.get_by_label("New qty (units)")
                    assert price.input_value() == "20000"
                    assert quantity.input_value() == "75"
                    assert page.evaluate("document.activeElement.name") == "price"
                    _no_sideways_scroll(page, "#blotter .table-wrap")
                    assert page.evaluate(SMALL_TARGETS) == []
                    # a refusal is shown in the row, in the broker's rules (lots), editor kept
                    quantity.fill("100")
                    editor.get_by_role("button", name="Save").click()
                    outcome = open_row.locator(".row-outcome")
                    page.wait_for_function("(el) => el.dataset.state === 'failed'",
                                           arg=outcome.element_handle())
                    assert outcome.inner_text().startswith(
                        "modify refused: quantity 100 is not a multiple of the lot size 75")
                    assert editor.is_visible()
                    # then the change: price and quantity at the venue, the row updated live
                    price.fill("20000.5")
                    quantity.fill("150")
                    quantity.press("Enter")
                    page.wait_for_function("(el) => el.dataset.state === 'done'",
                                           arg=outcome.element_handle())
                    assert outcome.inner_text() == "modified: 150 @ 20,000.50"
                    assert not editor.is_visible()
                    page.wait_for_function(
                        "(id) => document.querySelector(`#orders tr[data-order-id='${id}'] "
                        "[data-col='quantity']`).textContent === '150'", arg=resting)
                    assert cell(page, resting, "price") == "20,000.50"
                    at_venue = {o["order_id"]: o for o in client.orders()}[resting]
                    assert (at_venue["quantity"], at_venue["price"]) == (150, 20000.5)
                    assert open_row.get_attribute("data-status") == "OPEN"
                    _no_sideways_scroll(page, "#blotter .table-wrap")
                    if viewport is DESKTOP:
                        screenshot(page, "blotter.png", "#blotter")

            await in_browser(chromium, scenario, viewport=viewport)


# -- item 7: readable everywhere ----------------------------------------------------------


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1440x900", "390x844"])
async def test_the_desk_is_readable(
    tmp_path: Path, chromium: str, viewport: dict[str, int]  # noqa: F811
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path) as desk:

            def scenario(page: Any) -> None:
                sign_in(page, desk.base_url, TOKENS["primary"])
                expect_live(page)
                # the identity is the token's name
                assert page.locator("#who").inner_text() == (
                    f"Signed in as {TOKEN_NAMES['primary']}")
                with desk.client(TOKENS["primary"]) as client:
                    filled = client.place_at_venue(symbol="SBIN")
                    resting = place_resting(client)
                    row(page, filled, "COMPLETE")
                    row(page, resting, "OPEN")
                    client.faults(reject_symbols=[NIFTY_FUT])
                # a basket that rolls back: its result table has a rollback column
                fill_leg(page, 1, "SBIN", "BUY", 1)
                page.get_by_role("button", name="Add leg").click()
                fill_leg(page, 2, NIFTY_FUT, "BUY", 1)
                place_and_confirm(page)
                page.wait_for_selector('#basket-result[data-status="rolled_back"]')
                rollback = page.locator('#basket-result td.rollback[data-action]:not('
                                        '[data-action="none"])')
                assert rollback.count() == 1
                # every time shown is in IST and says so
                times = page.locator('#orders td[data-col="time"]').all_inner_texts()
                assert times and all(re.fullmatch(r"\d\d:\d\d:\d\d IST", t) for t in times), times
                # ids, tags and rollbacks readable in full, without a sideways scroll
                _no_sideways_scroll(page, "#blotter .table-wrap")
                _no_sideways_scroll(page, "#basket-result .table-wrap")
                cut = page.evaluate(CUT_OFF, '#orders [data-col="tag"], '
                                    '#orders [data-col="order_id"], #basket-result td')
                assert cut == [], cut
                tags = page.locator('#orders [data-col="tag"]').all_inner_texts()
                assert any(t.startswith("od") and len(t) > 10 for t in tags), tags
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= viewport["width"], f"the page scrolls sideways: {width}px"
                # every control a thumb can hit
                small = page.evaluate(SMALL_TARGETS)
                assert small == [], small
                if viewport is PHONE:  # the phone's rows are cards: each field labelled
                    label = page.evaluate(
                        "(id) => getComputedStyle(document.querySelector(`#orders tr"
                        "[data-order-id='${id}'] [data-group='order_id']`), '::before').content",
                        resting)
                    assert label == '"Order id · tag"'
                    screenshot(page, "phone.png")

            await in_browser(chromium, scenario, viewport=viewport)


async def test_a_freeze_limit_error_is_in_lots_and_offers_to_split(
    tmp_path: Path, chromium: str  # noqa: F811
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path) as desk:

            def scenario(page: Any) -> None:
                sign_in(page, desk.base_url, TOKENS["primary"])
                expect_live(page)
                fill_leg(page, 1, NIFTY_FUT, "SELL", 30, order_type="LIMIT", price="24500")
                place_and_confirm(page)
                page.wait_for_selector('#basket-result[data-status="invalid"]')
                leg = page.locator("#legs .leg").first
                error = leg.locator('.error[data-field="quantity"]').inner_text()
                assert error == ("quantity 2250 (30 lots) is above the freeze limit of 1800 "
                                 "(24 lots): split it into 2 orders of at most 24 lots")
                split = leg.get_by_role("button", name="Split into 2 legs of at most 24 lots")
                split.click()
                legs = page.locator("#legs .leg")
                assert legs.count() == 2
                values = [(legs.nth(i).get_by_label("Symbol").input_value(),
                           legs.nth(i).get_by_label("Side").input_value(),
                           legs.nth(i).get_by_label("Lots").input_value(),
                           legs.nth(i).get_by_label("Price").input_value()) for i in range(2)]
                assert values == [(NIFTY_FUT, "SELL", "24", "24500"),
                                  (NIFTY_FUT, "SELL", "6", "24500")]
                assert not leg.locator('.error[data-field="quantity"]').inner_text()
                assert not split.is_visible()
                with desk.client(TOKENS["primary"]) as client:
                    assert client.orders() == []  # nothing was placed meanwhile

            await in_browser(chromium, scenario)
