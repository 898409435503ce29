"""CORS over real HTTP: a front-end on another origin listed in `allowed_origins` may call the
API (preflight answered, headers on every answer, errors included); any other origin gets no
CORS header at all. The last test does it from a page in Chromium on a second origin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from supervision.service import Running
from tests.fixtures_browser import TOKENS as BROWSER_TOKENS
from tests.fixtures_browser import chromium, in_browser, open_served_desk, serve_page
from tests.fixtures_service import api, open_test_service

__all__ = ["chromium"]  # the fixture

FRONT = "http://front.example:3000"
OTHER = "http://evil.example:3000"
BATCHES = "/accounts/primary/batch-orders"


@pytest.fixture
async def cors_service(tmp_path: Path) -> AsyncIterator[Running]:
    toml = f'allowed_origins = ["{FRONT}/"]'  # the configured form may end in a slash
    async with open_test_service(tmp_path, server_toml=toml) as running:
        yield running


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items()
            if k.lower().startswith("access-control-")}


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key"}


async def test_a_preflight_from_an_allowed_origin_is_answered(cors_service: Running) -> None:
    with trio.fail_after(10):
        async with api(cors_service, token=None) as http:
            response = await http.options(BATCHES, headers=preflight(FRONT))
            assert response.status_code == 204, response.text
            assert cors_headers(response) == {
                "access-control-allow-origin": FRONT,
                "access-control-allow-methods": "POST",
                "access-control-allow-headers": "Authorization, Content-Type, Idempotency-Key",
                "access-control-max-age": "600",
                "access-control-expose-headers": "X-Correlation-ID, Retry-After",
            }
            assert "Origin" in response.headers["Vary"]
            orders = await http.options("/accounts/primary/orders/abc",
                                        headers=preflight(FRONT, "DELETE"))
            # An order is cancelled (DELETE) or modified (PUT) at its own path.
            assert orders.headers["Access-Control-Allow-Methods"] == "PUT, DELETE"


async def test_every_answer_to_an_allowed_origin_carries_the_headers(
    cors_service: Running,
) -> None:
    cases = [  # (token, method, path, body, status)
        ("primary-secret", "GET", "/accounts/primary/orders", None, 200),
        (None, "GET", "/accounts/primary/orders", None, 401),
        ("secondary-secret", "GET", "/accounts/primary/orders", None, 403),
        ("primary-secret", "GET", "/accounts/nobody/orders", None, 404),
        ("primary-secret", "PUT", BATCHES, None, 405),
        ("primary-secret", "POST", BATCHES, {"orders": []}, 422),
    ]
    with trio.fail_after(15):
        for token, method, path, body, status in cases:
            async with api(cors_service, token=token) as http:
                response = await http.request(method, path, json=body,
                                              headers={"Origin": FRONT})
            assert response.status_code == status, (path, response.text)
            assert cors_headers(response) == {
                "access-control-allow-origin": FRONT,
                "access-control-expose-headers": "X-Correlation-ID, Retry-After",
            }, (status, response.headers)
            assert "Origin" in response.headers["Vary"]
            assert "X-Correlation-ID" in response.headers


async def test_another_origin_gets_no_cors_header(cors_service: Running) -> None:
    with trio.fail_after(10):
        async with api(cors_service) as http:
            refused = await http.options(BATCHES, headers=preflight(OTHER))
            assert refused.status_code == 403 and cors_headers(refused) == {}
            for origin in (OTHER, "null"):
                response = await http.get("/accounts/primary/orders", headers={"Origin": origin})
                assert response.status_code == 403 and cors_headers(response) == {}
            plain = await http.get("/accounts/primary/orders")  # no Origin: not a browser
            assert plain.status_code == 200 and cors_headers(plain) == {}


# -- a real browser on a second origin ----------------------------------------------------

_CALL = """async ([base, token]) => {
    const reply = async (response) => ({
        status: response.status, cid: response.headers.get("X-Correlation-ID"),
        body: await response.json()});
    try {
        const orders = await fetch(base + "/accounts/primary/orders",
                                   {headers: {Authorization: "Bearer " + token}});
        const invalid = await fetch(base + "/accounts/primary/batch-orders", {
            method: "POST", body: JSON.stringify({orders: []}),
            headers: {Authorization: "Bearer " + token, "Content-Type": "application/json",
                      "Idempotency-Key": "cors-1"}});
        return {orders: await reply(orders), invalid: await reply(invalid)};
    } catch (error) {
        return {blocked: String(error)};
    }
}"""


async def test_a_page_on_an_allowed_origin_calls_the_api_in_chromium(
    tmp_path: Path, chromium: str,  # noqa: F811
) -> None:
    async with trio.open_nursery() as nursery:
        port = await serve_page(nursery, "<!doctype html><title>front</title><p>front-end</p>")
        front = f"http://127.0.0.1:{port}"
        async with open_served_desk(tmp_path, allowed_origins=(front,)) as desk:
            token = BROWSER_TOKENS["primary"]

            def scenario(page: Any) -> tuple[dict, dict]:
                page.goto(front + "/")
                allowed = page.evaluate(_CALL, [desk.base_url, token])
                page.goto(f"http://localhost:{port}/")  # another origin, same page
                return allowed, page.evaluate(_CALL, [desk.base_url, token])

            with trio.fail_after(60):
                allowed, other = await in_browser(chromium, scenario)
        nursery.cancel_scope.cancel()
    assert allowed["orders"]["status"] == 200 and "orders" in allowed["orders"]["body"]
    assert allowed["orders"]["cid"]  # an exposed header the page can read
    assert allowed["invalid"]["status"] == 422
    assert allowed["invalid"]["body"]["fields"][0]["path"] == "orders"
    assert allowed["invalid"]["cid"] == allowed["invalid"]["body"]["correlation_id"]
    assert "blocked" in other, other  # the browser refused: no CORS header for that origin
