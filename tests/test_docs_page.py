"""`/docs` in a real browser: the renderer served by orderdesk itself lists every operation, the
websocket's messages and the schemas, under the page's strict CSP with no console error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from tests.fixtures_browser import UI_TIMEOUT_MS, chromium, in_browser, open_served_desk  # noqa: F401
from web.contract import OPERATIONS
from web.ws_protocol import MESSAGES


async def test_docs_page_renders_the_contract(tmp_path: Path, chromium: str) -> None:  # noqa: F811
    with trio.fail_after(90):
        async with open_served_desk(tmp_path) as desk:

            def scenario(page: Any) -> dict[str, Any]:
                problems: list[str] = []
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.goto(desk.base_url + "/docs")
                page.wait_for_selector("#schemas h2", timeout=UI_TIMEOUT_MS)
                page.locator("#op-post_accounts_account_id_batch_orders summary").click()
                return {
                    "operations": page.locator("#operations > details").count(),
                    "messages": page.locator("#websocket > details").count(),
                    "channel": page.locator("#websocket h2").text_content(),
                    "batch": page.locator("#op-post_accounts_account_id_batch_orders").inner_text(),
                    "field_error": page.locator("#schema-FieldError").count(),
                    "problems": problems,
                }

            seen = await in_browser(chromium, scenario)
    assert seen["problems"] == []
    assert seen["operations"] == len(OPERATIONS)
    assert seen["messages"] == len(MESSAGES) + 2  # and the client's ping and watch
    assert "/ws/orders/{account_id}" in seen["channel"]
    assert "Idempotency-Key" in seen["batch"] and "422" in seen["batch"]
    assert seen["field_error"] == 1
