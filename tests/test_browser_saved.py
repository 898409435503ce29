"""Saved baskets in Chromium (issue 16, item 5), at desk and phone sizes: a ticket saved by name
in one browser is loaded in another (a fresh profile: nothing shared but the server) with the
same legs; a replace asks first; delete empties the list; saving and loading place nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.fixtures_browser import (
    TOKENS,
    chromium,  # noqa: F401  (a fixture)
    in_browser,
    open_served_desk,
    screenshot,
    sign_in,
)
from tests.fixtures_venue import NIFTY_CE, NIFTY_FUT
from tests.test_browser import expect_live, fill_leg

TEST_TIMEOUT_S = 120
NAME = "Weekly hedge ₹"
SIZES = {"desk": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}


def record_writes(page: Any) -> list[str]:
    """Every request the page makes that is not a GET (method and path), as it makes it."""
    sent: list[str] = []
    page.on("request", lambda r: sent.append(f"{r.method} {r.url.split('/', 3)[3]}")
            if r.method != "GET" else None)
    return sent


def placed(sent: list[str]) -> list[str]:
    return [s for s in sent if "/batch-orders" in s or s.endswith("/orders")]


def leg_values(page: Any, n: int) -> dict[str, str]:
    leg = page.locator("#legs .leg").nth(n - 1)
    return {label: leg.get_by_label(label, exact=True).input_value()
            for label in ("Symbol", "Side", "Lots", "Type", "Price", "Product")}


def status(page: Any, text: str) -> str:
    page.wait_for_function("t => document.querySelector('#saved-status').textContent"
                           ".includes(t)", arg=text)
    return str(page.locator("#saved-status").inner_text())


def fits_sideways(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"the page scrolls sideways: {width}px"
    for button in ("#saved-save", "#saved-load", "#saved-delete"):
        box = page.locator(button).bounding_box()
        assert box is not None and box["height"] >= 44, (button, box)  # a tap target


@pytest.mark.parametrize("size", SIZES, ids=str)
async def test_saved_in_one_browser_loaded_in_another(
    tmp_path: Path, chromium: str, size: str  # noqa: F811
) -> None:
    viewport = SIZES[size]
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path) as desk:

            def save(page: Any) -> list[str]:
                sent = record_writes(page)
                sign_in(page, desk.base_url, TOKENS["primary"])
                expect_live(page)
                assert page.locator("#saved-list").inner_text() == "No saved baskets"
                assert page.get_by_role("button", name="Load").is_disabled()
                fill_leg(page, 1, NIFTY_FUT, "BUY", 2)
                page.get_by_role("button", name="Add leg").click()
                fill_leg(page, 2, NIFTY_CE, "SELL", 1, order_type="LIMIT", price="12.5")
                page.get_by_role("button", name="Save", exact=True).click()
                assert "Enter a name" in page.locator("#saved-error").inner_text()
                page.get_by_label("Name", exact=True).fill(NAME)
                page.get_by_label("Name", exact=True).press("Enter")  # saves, places nothing
                text = status(page, "Saved")
                assert text == f"Saved “{NAME}”: 2 legs. Nothing was placed."
                option = page.locator("#saved-list option").first
                assert option.inner_text().startswith(f"{NAME} · 2 legs · saved ")
                assert option.inner_text().endswith(" IST")
                # the same name again asks before replacing; Cancel sends nothing
                page.get_by_role("button", name="Save", exact=True).click()
                page.wait_for_selector("#confirm[open]")
                assert page.locator("#confirm-title").inner_text() == f"Replace “{NAME}”?"
                page.get_by_role("button", name="Cancel").click()
                fits_sideways(page)
                return sent

            sent = await in_browser(chromium, save, viewport=viewport)
            assert [s for s in sent if "baskets" in s] == [
                "PUT accounts/primary/baskets/Weekly%20hedge%20%E2%82%B9"]
            assert placed(sent) == []

            def load(page: Any) -> list[str]:
                sent = record_writes(page)
                sign_in(page, desk.base_url, TOKENS["primary"])
                expect_live(page)
                page.wait_for_function("() => !document.querySelector('#saved-list').disabled")
                assert page.get_by_label("Saved baskets").input_value() == NAME
                page.get_by_role("button", name="Load").click()
                assert status(page, "Loaded") == (
                    f"Loaded “{NAME}”: 2 legs in the ticket, not placed. Review them, then "
                    "Place basket.")
                assert leg_values(page, 1) == {"Symbol": NIFTY_FUT, "Side": "BUY", "Lots": "2",
                                               "Type": "MARKET", "Price": "",
                                               "Product": "NRML"}
                assert leg_values(page, 2) == {"Symbol": NIFTY_CE, "Side": "SELL", "Lots": "1",
                                               "Type": "LIMIT", "Price": "12.5",
                                               "Product": "NRML"}
                first = page.locator("#legs .leg").first
                page.wait_for_function("el => el.textContent === '= 150 units'",
                                       arg=first.locator(".units").element_handle())
                assert page.locator("#leg-count").inner_text() == "2 of 10 legs"
                assert not page.locator("#confirm").is_visible()  # no review: nothing to place
                fits_sideways(page)
                if size == "desk":
                    screenshot(page, "saved-baskets.png", "#basket")
                page.get_by_role("button", name="Delete").click()
                page.wait_for_selector("#confirm[open]")
                page.get_by_role("button", name="Delete").last.click()
                status(page, "Deleted")
                page.wait_for_function("() => document.querySelector('#saved-list').disabled")
                assert page.locator("#saved-list").inner_text() == "No saved baskets"
                assert leg_values(page, 1)["Symbol"] == NIFTY_FUT  # the ticket stays
                return sent

            sent = await in_browser(chromium, load, viewport=viewport)
            assert [s for s in sent if "baskets" in s] == [
                "DELETE accounts/primary/baskets/Weekly%20hedge%20%E2%82%B9"]
            assert placed(sent) == []
            async with httpx.AsyncClient(base_url=desk.base_url, headers={
                    "Authorization": f"Bearer {TOKENS['primary']}"}) as http:
                assert (await http.get("/accounts/primary/baskets")).json()["baskets"] == []
                assert (await http.get("/accounts/primary/orders")).json()["orders"] == []
