"""Order bodies as a client sends them: one `leg()` for every test (and the golden record)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.fixtures_venue import BANKNIFTY_FUT, NIFTY_CE, NIFTY_FUT

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
