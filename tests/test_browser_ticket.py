"""The basket ticket's safe submit and margin line, in Chromium (issue 16, items 1 and 2):
Enter places nothing, Place opens a review whose confirm places, Repeat is a new
Idempotency-Key, and the margin line says what a basket needs before anything is placed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import trio

from tests.fixtures_browser import (
    TOKENS,
    chromium,  # noqa: F401  (a fixture)
    in_browser,
    open_served_desk,
    sign_in,
)
from tests.fixtures_venue import NIFTY_FUT
from tests.test_browser import expect_live, fill_leg

TEST_TIMEOUT_S = 90
#: ₹ with Indian digit grouping: ₹52,36,107.85, ₹2,55,63,168.00.
RUPEES = r"₹(\d{1,2},)*\d{1,3}\.\d{2}"


def record_batches(page: Any) -> list[dict[str, str]]:
    """The headers of every batch-orders POST the page makes, as it makes them."""
    sent: list[dict[str, str]] = []
    page.on("request", lambda r: sent.append(r.headers)
            if r.method == "POST" and r.url.endswith("/batch-orders") else None)
    return sent


def margin_line(page: Any, text: str) -> str:
    page.wait_for_function("t => document.querySelector('#basket-margin').textContent"
                           ".includes(t)", arg=text)
    return str(page.locator("#basket-margin").inner_text())


async def test_enter_places_nothing_review_confirms_repeat_is_a_new_key(
    tmp_path: Path, chromium: str  # noqa: F811
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path) as desk:

            def scenario(page: Any) -> None:
                sent = record_batches(page)
                sign_in(page, desk.base_url, TOKENS["primary"])
                expect_live(page)
                fill_leg(page, 1, NIFTY_FUT, "BUY", 1)
                page.locator("#legs .leg").first.get_by_label("Lots").press("Enter")
                page.get_by_label("Parallel").press("Enter")
                # the margin line arrives without placing anything
                line = margin_line(page, "available")
                assert re.search(rf"Margin {RUPEES} required · {RUPEES} available", line)
                assert "net debit ₹" in line
                assert sent == []
                assert not page.locator("#confirm").is_visible()

                page.get_by_role("button", name="Place basket").click()
                page.wait_for_selector("#confirm[open]")
                assert page.evaluate("document.activeElement.id") == "confirm-cancel"
                item = page.locator("#confirm-items li").first
                assert f"BUY {NIFTY_FUT} · 1 lot(s) = 75 units" in item.inner_text()
                assert item.get_attribute("data-side") == "BUY"
                assert "required" in page.locator("#confirm-text").inner_text()
                page.get_by_role("button", name="Cancel").click()
                assert sent == []  # cancelled: nothing sent

                page.get_by_role("button", name="Place basket").click()
                page.get_by_role("button", name="Confirm and place").click()
                page.wait_for_selector('#basket-result[data-status="success"]')
                top = page.evaluate("document.querySelector('#basket-result')"
                                    ".getBoundingClientRect().top")
                assert top < page.evaluate("innerHeight"), "the result is below the fold"
                assert page.locator("#basket-submit").is_hidden()  # not placeable as it stands
                page.get_by_role("button", name="Repeat").click()
                page.get_by_role("button", name="Confirm and place").click()
                page.wait_for_function(
                    "() => document.querySelectorAll('#basket-result [data-act]').length == 2")
                assert len(sent) == 2
                keys = [h["idempotency-key"] for h in sent]
                assert keys[0] != keys[1], "a repeat is deliberately a new basket"
                page.get_by_role("button", name="Clear").click()
                assert page.locator("#legs .leg").count() == 1
                assert page.locator("#legs .leg").first.get_by_label("Symbol").input_value() == ""
                with desk.client(TOKENS["primary"]) as client:
                    assert len(client.orders()) == 2

            await in_browser(chromium, scenario)


async def test_margin_line_says_short_by_without_placing(
    tmp_path: Path, chromium: str  # noqa: F811
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path) as desk:

            def scenario(page: Any) -> None:
                sent = record_batches(page)
                sign_in(page, desk.base_url, TOKENS["primary"])
                expect_live(page)
                for n in (1, 2, 3):  # 3 × 24 lots SELL at the freeze limit: beyond the funds
                    if n > 1:
                        page.get_by_role("button", name="Add leg").click()
                    fill_leg(page, n, NIFTY_FUT, "SELL", 24)
                line = margin_line(page, "short by")
                assert re.search(rf"short by {RUPEES}", line), line
                assert "net credit ₹" in line
                assert page.locator("#basket-margin").get_attribute("data-fits") == "false"
                assert sent == []
                with desk.client(TOKENS["primary"]) as client:
                    assert client.orders() == []  # nothing placed

            await in_browser(chromium, scenario)
