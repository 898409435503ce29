"""Order bodies as a client sends them: one `leg()` for every test (and the golden record)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from store import FINAL_BATCH_STATUSES
from tests.fixtures_venue import BANKNIFTY_FUT, NIFTY_CE, NIFTY_FUT
from tests.fixtures_waits import wait_until

#: A `leg()` field given as DROP is left out of the body (a missing-field case).
DROP: Any = object()


def leg(
    symbol: str = NIFTY_FUT, side: str = "BUY", quantity: int = 75, **fields: Any
) -> dict[str, Any]:
    """A MARKET NRML leg on NFO; `fields` override or add keys in place (key order kept)."""
    body = {"tradingsymbol": symbol, "exchange": "NFO", "transaction_type": side,
            "quantity": quantity, "order_type": "MARKET", "product": "NRML", **fields}
    return {k: v for k, v in body.items() if v is not DROP}


def strangle() -> list[dict[str, Any]]:
    return [leg(), leg(BANKNIFTY_FUT, "SELL", 35), leg(NIFTY_CE, quantity=150),
            leg(NIFTY_CE, "SELL", 75)]


def tags(orders: list[dict[str, Any]]) -> Counter[str]:
    return Counter(o["tag"] for o in orders)


async def post_batch_never_answered(api: httpx.AsyncClient, body: dict[str, Any], key: str) -> None:
    """The client whose request dies with its gateway (killed mid-batch): no answer ever comes."""
    try:
        response = await api.post("/accounts/primary/batch-orders", json=body,
                                  headers={"Idempotency-Key": key})
    except httpx.TransportError:
        return
    raise AssertionError(f"the batch finished before the kill: {response.text}")


async def batch_concluded(api: httpx.AsyncClient, batch_id: str, what: str,
                          timeout_s: float = 10.0) -> dict[str, Any]:
    """GET the batch until it has a final status (after a recovery or a takeover)."""
    async def probe() -> dict[str, Any] | None:
        response = await api.get(f"/accounts/primary/batch-orders/{batch_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["status"] in FINAL_BATCH_STATUSES else None

    result: dict[str, Any] = await wait_until(probe, what, timeout_s)
    return result
