"""The built-in page in a real browser (Debian's chromium, headless, driven by Playwright).

Each test starts the whole service from a TOML file (`open_served_desk`), then runs a scenario in
the browser on a worker thread; the scenario acts on the service as a second client would (orders
at the venue, fault injection, the REST API) and reads the results off the page.

`ORDERDESK_SCREENSHOTS_DIR=docs .venv/bin/python -m pytest tests/test_browser.py` refreshes
the README's screenshots.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.fixtures_browser import (
    ADMIN_TOKEN,
    TOKEN_NAMES,
    TOKENS,
    ServedDesk,
    chromium,  # noqa: F401  (a fixture)
    in_browser,
    open_served_desk,
    screenshot,
    sign_in,
)
from tests.fixtures_venue import BANKNIFTY_FUT, NIFTY_FUT

TEST_TIMEOUT_S = 90


def expect_live(page: Any) -> None:
    page.wait_for_selector('#link[data-state="live"]')
    page.wait_for_selector('#upstream[data-state="connected"]')


def row(page: Any, order_id: str, status: str | None = None) -> Any:
    selector = f'#orders tr[data-order-id="{order_id}"]'
    if status:
        selector += f'[data-status="{status}"]'
    page.wait_for_selector(selector)
    return page.locator(selector)


def cell(page: Any, order_id: str, col: str) -> str:
    text = page.locator(f'#orders tr[data-order-id="{order_id}"] [data-col="{col}"]')
    return str(text.inner_text())


def fill_leg(page: Any, n: int, symbol: str, side: str, lots: int, **extra: str) -> None:
    """Fill leg `n` (1-based) through the form's labels, as a keyboard user would."""
    leg = page.locator("#legs .leg").nth(n - 1)
    leg.get_by_label("Symbol").fill(symbol)
    leg.get_by_label("Symbol").press("Tab")  # change: resolves the instrument (lot size)
    page.wait_for_function(
        "(el) => el.textContent.includes('lot')", arg=leg.locator(".lot").element_handle()
    )
    leg.get_by_label("Side").select_option(side)
    leg.get_by_label("Lots").fill(str(lots))
    if "order_type" in extra:
        leg.get_by_label("Type").select_option(extra["order_type"])
    if "price" in extra:
        leg.get_by_label("Price").fill(extra["price"])


def place_resting(client: Any) -> str:
    """A LIMIT order through orderdesk's own API, far from the price: it rests, OPEN."""
    placed = client.http.post("/accounts/primary/orders", json={
        "tradingsymbol": NIFTY_FUT, "exchange": "NFO", "transaction_type": "BUY",
        "quantity": 75, "order_type": "LIMIT", "price": 20000, "product": "NRML",
    })
    assert placed.status_code == 200, placed.text
    return str(placed.json()["order_id"])


# -- sign in ------------------------------------------------------------------------------


async def test_wrong_token_is_refused(tmp_path: Path, chromium: str) -> None:  # noqa: F811
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path) as desk:

            def scenario(page: Any) -> None:
                sign_in(page, desk.base_url, "not-a-token")
                page.wait_for_selector("#token-error:has-text('refused')")
                assert page.locator("#desk").is_hidden()
                assert page.evaluate("sessionStorage.getItem('orderdesk.token')") is None
                # the token never travels in a URL, not even in a failed sign-in
                assert "not-a-token" not in page.url

            await in_browser(chromium, scenario)


async def test_account_token_sees_own_account_only(
    tmp_path: Path, chromium: str  # noqa: F811
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path) as desk:

            def scenario(page: Any) -> None:
                sign_in(page, desk.base_url, TOKENS["secondary"])
                expect_live(page)
                options = page.locator("#account option").all_inner_texts()
                assert options == ["secondary"]
                assert page.locator("#health").is_hidden()
                # the websocket was opened with a ticket, never with the token
                urls = page.evaluate("window.__orderdesk.stream.connections.length")
                assert urls == 1
                # a reload keeps the session (session storage) and reconnects
                page.reload()
                expect_live(page)

            await in_browser(chromium, scenario)


async def test_admin_sees_every_account_and_health(
    tmp_path: Path, chromium: str  # noqa: F811
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path) as desk:

            def scenario(page: Any) -> None:
                with desk.client(TOKENS["secondary"]) as client:
                    order_id = client.place_at_venue("secondary")
                sign_in(page, desk.base_url, ADMIN_TOKEN)
                expect_live(page)
                assert page.locator("#account option").all_inner_texts() == [
                    "primary", "secondary"
                ]
                page.wait_for_selector('#actors tr[data-name="account:primary"]')
                page.wait_for_selector('#actors tr[data-name="account:secondary"]')
                assert page.locator("#health-summary").get_attribute("data-state") == "ok"
                page.locator("#account").select_option("secondary")
                row(page, order_id, "COMPLETE")
                assert page.locator("#orders tbody tr").count() == 1

            await in_browser(chromium, scenario)


# -- the live blotter ---------------------------------------------------------------------


async def test_orders_appear_live_and_update_in_place(
    tmp_path: Path, chromium: str  # noqa: F811
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path) as desk:

            def scenario(page: Any) -> None:
                sign_in(page, desk.base_url, TOKENS["primary"])
                expect_live(page)
                with desk.client(TOKENS["primary"]) as client:
                    filled = client.place_at_venue(symbol="SBIN")
                    row(page, filled, "COMPLETE")
                    assert cell(page, filled, "fill") == "1 / 0"
                    # through orderdesk's own API: place, then cancel
                    resting = place_resting(client)
                    first = row(page, resting, "OPEN").element_handle()
                    assert cell(page, resting, "tag").startswith("od")
                    # newest first
                    ids = page.locator("#orders tbody tr").evaluate_all(
                        "rows => rows.map(r => r.dataset.orderId)"
                    )
                    assert ids == [resting, filled]
                    response = client.http.delete(f"/accounts/primary/orders/{resting}")
                    assert response.status_code == 200, response.text
                    row(page, resting, "CANCELLED")
                    # the same element, updated in place
                    assert first.evaluate("el => el.dataset.status") == "CANCELLED"
                    assert cell(page, resting, "fill") == "0 / 0"  # Kite: the rest is cancelled
                # filters
                page.get_by_label("Status").select_option("CANCELLED")
                page.wait_for_function(
                    "() => document.querySelectorAll('#orders tbody tr').length === 1"
                )
                page.get_by_label("Status").select_option("")
                page.get_by_label("Symbol", exact=True).first.fill("SBI")
                page.wait_for_function(
                    "() => document.querySelectorAll('#orders tbody tr').length === 1"
                )
                assert cell(page, filled, "tradingsymbol") == "SBIN"
                page.get_by_label("Symbol", exact=True).first.fill("")
                page.wait_for_function(
                    "() => document.querySelectorAll('#orders tbody tr').length === 2"
                )
                assert page.locator("#order-count").inner_text() == "2 orders"

            await in_browser(chromium, scenario)


async def test_resting_limit_order_cancelled_from_its_row(
    tmp_path: Path, chromium: str  # noqa: F811
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
                    # a finished order offers no cancel
                    assert not row(page, filled).get_by_role("button").is_visible()
                    # the confirmation names the order; its Cancel sends nothing
                    open_row.get_by_role("button", name=f"Cancel order {resting}").click()
                    dialog = page.get_by_role("dialog")
                    assert f"BUY 75 {NIFTY_FUT} at 20,000.00" in dialog.inner_text()
                    dialog.get_by_role("button", name="Cancel", exact=True).click()
                    assert not dialog.is_visible()
                    assert {o["order_id"]: o["status"] for o in client.orders()}[resting] == "OPEN"
                    open_row.get_by_role("button", name=f"Cancel order {resting}").click()
                    dialog.get_by_role("button", name="Cancel order").click()
                    cancelled = row(page, resting, "CANCELLED")
                    assert cancelled.locator(".row-outcome").inner_text() == "cancel sent"
                    assert not cancelled.get_by_role("button").is_visible()
                    assert {o["order_id"]: o["status"] for o in client.orders()}[resting] == (
                        "CANCELLED")

            await in_browser(chromium, scenario)


async def test_page_socket_drop_resumes_with_since(
    tmp_path: Path, chromium: str  # noqa: F811
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path) as desk:

            def scenario(page: Any) -> None:
                sign_in(page, desk.base_url, TOKENS["primary"])
                expect_live(page)
                with desk.client(TOKENS["primary"]) as client:
                    before = client.place_at_venue()
                    row(page, before, "COMPLETE")
                    seq = page.evaluate("window.__orderdesk.stream.seq")
                    # drop the page's own socket, then trade while it is away
                    page.evaluate("window.__orderdesk.ws.close()")
                    missed = [client.place_at_venue(symbol=s) for s in ("INFY", "TCS")]
                    for order_id in missed:
                        row(page, order_id, "COMPLETE")
                    expect_live(page)
                    connections = page.evaluate("window.__orderdesk.stream.connections")
                    assert len(connections) == 2, connections
                    resumed = connections[-1]
                    assert resumed["since"] == seq
                    assert resumed["first"] != "snapshot", resumed  # a replay, not a snapshot
                    # nothing missed: the page's book is the server's book
                    server = {o["order_id"]: o["status"] for o in client.orders()}
                page_rows = page.locator("#orders tbody tr").evaluate_all(
                    "rows => Object.fromEntries(rows.map(r => [r.dataset.orderId,"
                    " r.dataset.status]))"
                )
                assert page_rows == server
                assert page.evaluate("window.__orderdesk.stream.seq") == client_seq(desk)

            await in_browser(chromium, scenario)


async def test_offline_for_3_s_says_so_and_disables_placing(
    tmp_path: Path, chromium: str  # noqa: F811
) -> None:
    """The page cut off from orderdesk (the browser offline, its socket gone): after 3 s the
    badge no longer claims "connected", a banner says since when (IST), placing is disabled;
    all restored once the socket is back."""
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path) as desk:

            def scenario(page: Any) -> None:
                sign_in(page, desk.base_url, TOKENS["primary"])
                expect_live(page)
                place = page.get_by_role("button", name="Place basket")
                assert place.is_enabled()
                page.context.set_offline(True)
                page.evaluate("window.__orderdesk.ws.close()")
                page.wait_for_selector("#offline", state="visible", timeout=10_000)
                banner = page.get_by_role("alert").filter(has_text="Offline since")
                assert re.search(r"Offline since \d{2}:\d{2}:\d{2} IST", banner.inner_text())
                since = page.evaluate("Date.parse(document.querySelector('#offline')"
                                      ".dataset.since)")
                shown = page.evaluate("Date.now()")
                assert shown - since >= 3000  # not before 3 s
                assert "connected" not in page.locator("#upstream").inner_text()
                assert place.is_disabled()
                page.context.set_offline(False)
                expect_live(page)  # the socket back, the upstream state from its snapshot
                page.wait_for_selector("#offline", state="hidden")
                assert place.is_enabled()
                # the server itself fails and is restarted at once: a blip, no alarm
                page.evaluate("""() => { window.__alarms = 0; new MutationObserver(() => {
                    if (!document.querySelector('#offline').hidden) window.__alarms += 1;
                  }).observe(document.querySelector('#offline'), {attributes: true}); }""")
                before = page.evaluate("window.__orderdesk.stream.connections.length")
                trio.from_thread.run_sync(desk.running.web.fail, "drill")
                page.wait_for_function(
                    "n => window.__orderdesk.stream.connections.length > n", arg=before)
                expect_live(page)
                assert page.evaluate("window.__alarms") == 0
                assert place.is_enabled()

            await in_browser(chromium, scenario)


def client_seq(desk: ServedDesk) -> int:
    with desk.client(TOKENS["primary"]) as client:
        response = client.http.get("/accounts/primary/orders")
        return int(response.json()["seq"])


# -- the basket ticket --------------------------------------------------------------------


def place_and_confirm(page: Any) -> None:
    """Place basket, then confirm in the review (Cancel has the focus first)."""
    page.get_by_role("button", name="Place basket").click()
    page.wait_for_selector("#confirm[open]")
    assert page.evaluate("document.activeElement.id") == "confirm-cancel"
    page.get_by_role("button", name="Confirm and place").click()


def _batch_routes(desk: ServedDesk) -> bool:
    response = httpx.get(
        f"{desk.base_url}/accounts/primary/batch-orders/none",
        headers={"Authorization": f"Bearer {TOKENS['primary']}"},
    )
    return response.json().get("message") != "no such route"


async def test_basket_success_then_rollback(tmp_path: Path, chromium: str) -> None:  # noqa: F811
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path) as desk:
            if not await trio.to_thread.run_sync(_batch_routes, desk):
                pytest.fail("the batch routes are not served by open_service")

            def scenario(page: Any) -> None:
                sign_in(page, desk.base_url, TOKENS["primary"])
                expect_live(page)
                fill_leg(page, 1, NIFTY_FUT, "BUY", 2)
                assert page.locator("#legs .leg").first.locator(".units").inner_text() == (
                    "= 150 units"
                )
                page.get_by_role("button", name="Add leg").click()
                fill_leg(page, 2, BANKNIFTY_FUT, "SELL", 1)
                page.get_by_label("Hedge first").check()
                place_and_confirm(page)
                page.wait_for_selector('#basket-result[data-status="success"]')
                legs = page.locator("#basket-result tbody tr")
                assert legs.count() == 2
                assert legs.nth(0).get_attribute("data-status") == "COMPLETE"
                assert legs.nth(1).get_attribute("data-status") == "COMPLETE"
                assert "150" in legs.nth(0).inner_text()
                batch_id = page.locator("#basket-result .batch-id").inner_text()
                assert batch_id
                # the legs also reached the blotter, tagged with the batch
                page.wait_for_function(
                    "n => document.querySelectorAll('#orders tbody tr').length >= n", arg=2
                )
                screenshot(page, "basket-success.png", "#basket")

                with desk.client(TOKENS["primary"]) as client:
                    client.faults(reject_symbols=[BANKNIFTY_FUT])
                    page.get_by_label("Parallel").check()
                    page.get_by_role("button", name="Repeat").click()
                    page.get_by_role("button", name="Confirm and place").click()
                    page.wait_for_selector('#basket-result[data-status="rolled_back"]')
                    client.clear_faults()
                assert "Rolled back" in page.get_by_role("alert").filter(
                    has_text="Rolled back").inner_text()
                rejected = page.locator('#basket-result tbody tr[data-leg="1"]')
                assert rejected.get_attribute("data-status") == "REJECTED"
                assert rejected.locator(".err").inner_text()  # the broker's reason
                filled = page.locator('#basket-result tbody tr[data-leg="0"]')
                # the filled leg was flattened by a reverse order, and the page says so
                rollback = filled.locator(".rollback")
                assert rollback.get_attribute("data-action") == "flattened"
                assert re.search(r"COMPLETE · 150 filled", rollback.inner_text())
                screenshot(page, "basket-rollback.png", "#basket")
                screenshot(page, "desk.png")

            await in_browser(chromium, scenario)


async def test_basket_validation_errors_next_to_fields(
    tmp_path: Path, chromium: str  # noqa: F811
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path) as desk:
            if not await trio.to_thread.run_sync(_batch_routes, desk):
                pytest.fail("the batch routes are not served by open_service")

            def scenario(page: Any) -> None:
                sign_in(page, desk.base_url, TOKENS["primary"])
                expect_live(page)
                # checked on the page: a LIMIT leg without a price; nothing is sent
                fill_leg(page, 1, NIFTY_FUT, "BUY", 1, order_type="LIMIT")
                page.get_by_role("button", name="Place basket").click()
                leg = page.locator("#legs .leg").first
                assert leg.locator('.error[data-field="price"]').inner_text()
                assert leg.get_by_label("Price").get_attribute("aria-invalid") == "true"
                assert page.locator("#basket-result").is_hidden()
                # checked by the server (422): above the freeze quantity, field by field
                leg.get_by_label("Type").select_option("MARKET")
                page.get_by_role("button", name="Add leg").click()
                fill_leg(page, 2, BANKNIFTY_FUT, "SELL", 500)
                place_and_confirm(page)
                page.wait_for_selector('#basket-result[data-status="invalid"]')
                second = page.locator("#legs .leg").nth(1)
                assert second.locator('.error[data-field="quantity"]').inner_text()
                assert second.get_by_label("Lots").get_attribute("aria-invalid") == "true"
                assert not leg.locator('.error[data-field="quantity"]').inner_text()
                screenshot(page, "basket-invalid.png", "#basket")
                with desk.client(TOKENS["primary"]) as client:
                    assert client.orders() == []  # nothing placed

            await in_browser(chromium, scenario)


async def test_phone_layout(tmp_path: Path, chromium: str) -> None:  # noqa: F811
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path) as desk:

            def scenario(page: Any) -> None:
                sign_in(page, desk.base_url, TOKENS["primary"])
                expect_live(page)
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, f"the page scrolls sideways on a phone: {width}px"
                # keyboard: the basket is reachable and usable without a mouse
                page.get_by_label("Symbol", exact=True).last.focus()
                page.keyboard.type(NIFTY_FUT[:5])
                page.wait_for_function(
                    "() => document.querySelectorAll('#symbols option').length > 0"
                )

            await in_browser(chromium, scenario, viewport={"width": 390, "height": 844})


# -- the page's HTTP routes (no browser needed) -------------------------------------------


async def test_page_routes(tmp_path: Path) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_served_desk(tmp_path) as desk, httpx.AsyncClient(
            base_url=desk.base_url, timeout=10.0
        ) as http:
            index = await http.get("/")
            assert index.status_code == 200
            assert index.headers["content-type"].startswith("text/html")
            assert index.headers["cache-control"] == "no-cache"
            assert "default-src 'self'" in index.headers["content-security-policy"]
            script = await http.get("/static/app.js")
            assert script.headers["content-type"].startswith("text/javascript")
            assert script.headers["x-content-type-options"] == "nosniff"
            etag = script.headers["etag"]
            again = await http.get("/static/app.js", headers={"If-None-Match": etag})
            assert again.status_code == 304 and again.content == b""
            css = await http.get("/static/style.css")
            assert css.headers["content-type"].startswith("text/css")
            for bad in ("/static/../page.py", "/static/%2e%2e/page.py", "/static/.hidden.js",
                        "/static/nope.js", "/static/index.py"):
                response = await http.get(bad)
                assert response.status_code == 404, bad
                assert response.json()["error"] == "not_found"

            me = await http.get("/me", headers=_bearer(TOKENS["primary"]))
            assert me.json() == {"admin": False, "name": TOKEN_NAMES["primary"],
                                 "accounts": ["primary"]}
            admin = await http.get("/me", headers=_bearer(ADMIN_TOKEN))
            assert admin.json()["admin"] is True
            assert admin.json()["accounts"] == ["primary", "secondary"]
            assert (await http.get("/me")).status_code == 401
            assert (await http.get("/me", headers=_bearer("wrong"))).status_code == 401

            found = await http.get("/instruments?q=nifty&limit=5",
                                   headers=_bearer(TOKENS["primary"]))
            rows = found.json()["instruments"]
            assert len(rows) == 5
            assert rows[0]["tradingsymbol"] == NIFTY_FUT  # the shortest prefix match first
            assert rows[0] == {
                "tradingsymbol": NIFTY_FUT, "exchange": "NFO", "name": "NIFTY",
                "instrument_type": "FUT", "lot_size": 75, "tick_size": 0.05,
                "expiry": rows[0]["expiry"], "strike": 0.0, "freeze_quantity": 1800,
            }
            equities = await http.get("/instruments?exchange=NSE",
                                      headers=_bearer(TOKENS["primary"]))
            assert {r["tradingsymbol"] for r in equities.json()["instruments"]} >= {"SBIN", "INFY"}
            everything = await http.get("/instruments", headers=_bearer(ADMIN_TOKEN))
            assert len(everything.json()["instruments"]) > 100
            bad_limit = await http.get("/instruments?limit=0", headers=_bearer(ADMIN_TOKEN))
            assert bad_limit.status_code == 422
            assert bad_limit.json()["fields"][0]["path"] == "limit"
            other = await http.get("/instruments?account=secondary",
                                   headers=_bearer(TOKENS["primary"]))
            assert other.status_code == 404
            assert (await http.get("/instruments")).status_code == 401


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
