"""The workload of bench/load.py: a fixed, seeded schedule of mixed 2- and 4-leg baskets.

Symbols come from the venue's own instrument master (`GET /instruments/NFO`, Kite's CSV): the
nearest expiry's NIFTY and BANKNIFTY futures and options around the money, quantities whole
lots. A share of the batches (`rollback_share`) is made to roll back, half each way:

- `reject`: one leg trades a symbol the venue refuses (`reject_symbols`), so the venue REJECTS
  it after the other legs filled; they are flattened;
- `timeout`: one leg is a BUY LIMIT at one tick (it rests OPEN) and the batch's `timeout_s` is
  short: at the deadline it is cancelled and the filled legs are flattened.
"""

from __future__ import annotations

import csv
import io
import random
from typing import Any

import attrs

UNDERLYINGS = ("NIFTY", "BANKNIFTY")
STRIKES_EACH_SIDE = 6  # options used: this many strikes each side of the money
TIMEOUT_ROLLBACK_S = 1.0  # timeout_s of a batch made to time out


@attrs.frozen
class Underlying:
    name: str
    future: str
    lot: int
    calls: tuple[str, ...]  # by strike, around the money
    puts: tuple[str, ...]
    rejected: str  # a strike outside the band: the venue rejects it, nothing else trades it


@attrs.frozen
class Universe:
    """What the schedule trades."""

    underlyings: tuple[Underlying, ...]

    @property
    def rejected(self) -> list[str]:
        """The symbols the venue is told to reject (one per underlying: same lot size)."""
        return [u.rejected for u in self.underlyings]


@attrs.frozen
class Planned:
    """One batch of the schedule: when (seconds from the start), for whom, what."""

    n: int
    at_s: float
    account: str
    kind: str  # "plain", "reject", "timeout"
    body: dict[str, Any]
    key: str  # Idempotency-Key

    @property
    def legs(self) -> list[dict[str, Any]]:
        orders: list[dict[str, Any]] = self.body["orders"]
        return orders


def universe_from_csv(text: str) -> Universe:
    """The nearest expiry of each underlying, from the venue's instruments CSV."""
    rows = list(csv.DictReader(io.StringIO(text)))
    underlyings = []
    for name in UNDERLYINGS:
        mine = [r for r in rows if r["name"] == name and r["exchange"] == "NFO"]
        expiry = min(r["expiry"] for r in mine if r["instrument_type"] != "FUT")
        future = min((r for r in mine if r["instrument_type"] == "FUT"), key=lambda r: r["expiry"])
        options = [r for r in mine if r["expiry"] == expiry and r["instrument_type"] != "FUT"]
        strikes = sorted({float(r["strike"]) for r in options})
        spot = float(future["last_price"])
        atm = min(range(len(strikes)), key=lambda k: abs(strikes[k] - spot))
        band = strikes[max(0, atm - STRIKES_EACH_SIDE):atm + STRIKES_EACH_SIDE + 1]
        by_key = {(float(r["strike"]), r["instrument_type"]): r["tradingsymbol"] for r in options}
        underlyings.append(Underlying(
            name, future["tradingsymbol"], int(future["lot_size"]),
            tuple(by_key[(s, "CE")] for s in band), tuple(by_key[(s, "PE")] for s in band),
            by_key[(strikes[0], "PE")]))
    return Universe(tuple(underlyings))


def _leg(symbol: str, side: str, quantity: int) -> dict[str, Any]:
    return {"tradingsymbol": symbol, "exchange": "NFO", "transaction_type": side,
            "quantity": quantity, "order_type": "MARKET", "product": "NRML"}


def _basket(rng: random.Random, u: Underlying, legs: int) -> list[dict[str, Any]]:
    """A 2-leg (future against an option, or a strangle) or 4-leg (iron condor) basket."""
    qty = u.lot * rng.randint(1, 2)
    side = rng.choice(("BUY", "SELL"))
    other = "SELL" if side == "BUY" else "BUY"
    near = rng.randrange(1, STRIKES_EACH_SIDE - 1)
    call, put = u.calls[STRIKES_EACH_SIDE + near], u.puts[STRIKES_EACH_SIDE - near]
    if legs == 2:
        if rng.random() < 0.5:
            return [_leg(u.future, side, qty), _leg(call, other, qty)]
        return [_leg(call, side, qty), _leg(put, side, qty)]
    wing_call = u.calls[STRIKES_EACH_SIDE + near + 1]
    wing_put = u.puts[STRIKES_EACH_SIDE - near - 1]
    return [_leg(call, side, qty), _leg(wing_call, other, qty),
            _leg(put, side, qty), _leg(wing_put, other, qty)]


def schedule(
    universe: Universe, accounts: list[str], rate: float, seconds: float, *,
    seed: int, run: str, rollback_share: float = 0.3,
) -> list[Planned]:
    """`rate` batches a second for `seconds`, round-robin over `accounts`, seeded."""
    rng = random.Random(seed)
    out = []
    for n in range(max(1, round(rate * seconds))):
        u = rng.choice(universe.underlyings)
        orders = _basket(rng, u, rng.choice((2, 4)))
        body: dict[str, Any] = {"orders": orders, "rollback_on_failure": True}
        kind = "plain"
        if rng.random() < rollback_share:
            kind = rng.choice(("reject", "timeout"))
            last = orders[-1]
            if kind == "reject":
                last["tradingsymbol"] = u.rejected
            else:
                last.update(order_type="LIMIT", price=0.05, transaction_type="BUY")
                body["timeout_s"] = TIMEOUT_ROLLBACK_S
        out.append(Planned(n, n / rate, accounts[n % len(accounts)], kind, body,
                           f"load-{run}-{n}"))
    return out
