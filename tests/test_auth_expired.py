"""An expired broker token is not an outage: while the account's actor is parked in
`auth_expired`, every order route answers 409 `auth_expired` naming `orderdesk credentials`,
before any broker call, so clients do not retry blindly and nothing reaches the venue."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from supervision.service import Running
from tests.fixtures_service import TOKENS, api, expire_token, venue_control
from tests.fixtures_venue import NIFTY_FUT, kite_headers

ORDER = {"tradingsymbol": NIFTY_FUT, "exchange": "NFO", "transaction_type": "BUY",
         "quantity": 75, "order_type": "MARKET", "product": "NRML"}


async def test_every_order_route_refuses_while_the_token_is_expired(service: Running) -> None:
    with trio.fail_after(30):
        async with api(service) as http, venue_control(service) as venue:
            # An order placed while connected: the instrument master is loaded, so a batch
            # would get as far as the broker's margin check.
            placed = await http.post("/accounts/primary/orders", json=ORDER)
            assert placed.status_code == 200, placed.text
            await expire_token(service)

            answers: dict[str, httpx.Response] = {
                "order": await http.post("/accounts/primary/orders", json=ORDER),
                "keyed order": await http.post("/accounts/primary/orders", json=ORDER,
                                               headers={"Idempotency-Key": "k-1"}),
                "batch": await http.post("/accounts/primary/batch-orders",
                                         json={"orders": [ORDER, {**ORDER, "quantity": 150}]}),
                "cancel": await http.delete(
                    f"/accounts/primary/orders/{placed.json()['order_id']}"),
            }
            for route, response in answers.items():
                assert response.status_code == 409, (route, response.text)
                body: dict[str, Any] = response.json()
                assert body["error"] == "auth_expired", (route, body)
                assert "orderdesk credentials primary" in body["message"], (route, body)
                assert body["correlation_id"], (route, body)

            # Nothing reached the venue: its book (read with a fresh token) holds the first
            # order alone.
            token = (await venue.post("/_venue/accounts/primary/token")).json()["data"]
            listing = await venue.get("/orders",
                                      headers=kite_headers(token=token["access_token"]))
            assert [o["order_id"] for o in listing.json()["data"]] == [placed.json()["order_id"]]
            # The other account is not affected.
            async with api(service, TOKENS["secondary"]) as other:
                response = await other.post("/accounts/secondary/orders", json=ORDER)
                assert response.status_code == 200, response.text
