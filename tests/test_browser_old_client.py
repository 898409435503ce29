"""The old browser client, literally, in a page served by orderdesk (Debian's chromium).

Signing in on orderdesk's page sets the session cookie; then the old client's three lines run in
that page as they were written, only the host and port adapted (the page's own: a cookie set on
127.0.0.1 is not sent to localhost). What its `onmessage` logs is collected by wrapping
`console.log`, and `setInterval` is shortened so that its `ws.send('ping')` goes out in half a
second instead of thirty; the snippet's own code is not touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from tests.fixtures_browser import (
    TOKENS,
    chromium,  # noqa: F401  (a fixture)
    in_browser,
    open_desk,
    sign_in,
)
from tests.fixtures_venue import NIFTY_FUT

pytestmark = pytest.mark.filterwarnings("ignore::trio.TrioDeprecationWarning")

TEST_TIMEOUT_S = 90

#: Verbatim from the issue, `localhost:8081` being the only thing replaced.
OLD_CLIENT = """const ws = new WebSocket('ws://localhost:8081/ws/orders/primary')
ws.onmessage = (event) => { const update = JSON.parse(event.data); console.log('Order update:', update) }
setInterval(() => ws.send('ping'), 30000)"""  # noqa: E501

#: Test instrumentation around the snippet: collect what it logs, see its sockets close, and
#: run its 30 s ping timer every 0.5 s.
WATCH = """() => {
  window.__updates = [];
  window.__closed = [];
  const log = console.log.bind(console);
  console.log = (...args) => {
    if (args[0] === 'Order update:') window.__updates.push(...[args[1]].flat());
    log(...args);
  };
  const every = window.setInterval.bind(window);
  window.setInterval = (fn, ms, ...rest) => every(fn, Math.min(ms, 500), ...rest);
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('close', (e) => window.__closed.push([e.code, e.reason]));
    }
  };
}"""


#: The page's sign-in sets the cookie in the background (web/static/api.js): wait for it.
SIGNED_IN = "async () => { await (await import('/static/api.js')).session.cookie; }"


def got(page: Any, condition: str) -> None:
    """Wait until an update the snippet logged satisfies `condition` (JS, on `u`)."""
    page.wait_for_function(f"() => window.__updates.some((u) => {condition})")


async def test_the_old_browser_client_works_unchanged(
    tmp_path: Path, chromium: str  # noqa: F811
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_desk(tmp_path) as desk:
            host = desk.base_url.removeprefix("http://")
            snippet = OLD_CLIENT.replace("localhost:8081", host)

            def scenario(page: Any) -> None:
                sign_in(page, desk.base_url, TOKENS["primary"])
                page.wait_for_selector('#link[data-state="live"]')
                page.evaluate(SIGNED_IN)
                cookies = {c["name"]: c for c in page.context.cookies()}
                cookie = cookies["orderdesk_session"]
                assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
                assert cookie["path"] == "/" and cookie["expires"] > 0
                assert TOKENS["primary"] not in cookie["value"]
                assert "orderdesk_session" not in page.evaluate("() => document.cookie")

                page.evaluate(WATCH)
                page.evaluate("() => {\n" + snippet + "\n}")
                got(page, "u.type === 'snapshot' && Array.isArray(u.orders)")
                got(page, "u.type === 'pong'")  # the snippet's own ws.send('ping')
                with desk.client(TOKENS["primary"]) as client:
                    placed = client.http.post("/accounts/primary/orders", json={
                        "tradingsymbol": NIFTY_FUT, "exchange": "NFO",
                        "transaction_type": "BUY", "quantity": 75, "order_type": "LIMIT",
                        "price": 20000, "product": "NRML",
                    })
                    assert placed.status_code == 200, placed.text
                    order_id = placed.json()["order_id"]
                got(page, f"u.type === 'order' && u.order.order_id === '{order_id}'")

                # signing out on the page ends the session: the snippet's socket is closed
                page.get_by_role("button", name="Sign out").click()
                page.wait_for_function("() => window.__closed.length === 1")
                page.evaluate(SIGNED_IN)  # the sign-out's answer (clearing the cookie) is in
                assert page.evaluate("() => window.__closed[0]") == [4401, "session ended"]
                assert "orderdesk_session" not in {c["name"] for c in page.context.cookies()}

            await in_browser(chromium, scenario)
            assert len(desk.running.app.sessions) == 0
