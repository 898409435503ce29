"""The venue's margin model (deliberately simple, documented here, not SPAN).

Per order or position leg, with notional = quantity x price:

- futures, either side: 12% of notional (reported as span 9% + exposure 3%);
- option BUY: the premium, quantity x price (reported as `option_premium`);
- option SELL: 15% of the underlying's notional, quantity x underlying price (span 11% +
  exposure 4%); the underlying price is the LTP of the nearest future of the same name, or the
  strike when the master has no such future;
- equity: CNC (and NRML/MTF) the full notional, MIS 20% (reported as `var`).

The price is the order's limit price when it has one, else the LTP.

Hedge benefit: legs are grouped by underlying. Each leg has a delta sign (FUT BUY +, FUT SELL -,
CE BUY +, CE SELL -, PE BUY -, PE SELL +). In a group with margined quantity M (futures and short
options) and hedged quantity H = min(quantity with +, quantity with -), span and exposure are
multiplied by 1 - 0.7 * min(1, H / M). Premiums and equity are unchanged.

An account's used margin is that of its portfolio, hedge benefit included, as Kite's RMS
computes it: its open positions (valued at the average price) and its working orders (their
pending quantity, minus the part that only closes an existing position, which needs no margin).
`available` is `funds` minus it; realised P&L does not change funds. A new order needs the
increase of the portfolio's margin it causes (negative when it hedges), so an order that hedges
the account's positions gets the benefit, and one that only closes them needs nothing.

`POST /margins/basket` (`basket()`): `final` is the basket's margin with the hedge benefit among
its legs, `orders[]` each leg alone and `initial` their sum. With `consider_positions=true` the
account's portfolio (`held`) is counted as well: each figure is then the increase it causes over
the portfolio's margin, and legs that close positions need none. Without it (the venue's
default), the basket is priced on its own.

Charges are indicative: ₹20 brokerage per order, STT on the sell side (0.1% of option premium,
0.02% of futures notional, 0.1% / 0.025% of equity CNC / MIS), exchange and SEBI turnover fees,
18% GST on brokerage and fees.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from .instruments import Instrument

FUTURE_RATE = 0.12
OPTION_SELL_RATE = 0.15
MIS_RATE = 0.20
HEDGE_BENEFIT = 0.7


@attrs.frozen
class Leg:
    instrument: Instrument
    transaction_type: str
    quantity: int
    price: float  # limit price, or LTP
    product: str
    underlying_price: float


@attrs.frozen
class MarginParts:
    span: float = 0.0
    exposure: float = 0.0
    option_premium: float = 0.0
    var: float = 0.0

    @property
    def total(self) -> float:
        return self.span + self.exposure + self.option_premium + self.var

    def __add__(self, other: MarginParts) -> MarginParts:
        return MarginParts(
            self.span + other.span, self.exposure + other.exposure,
            self.option_premium + other.option_premium, self.var + other.var,
        )

    def __sub__(self, other: MarginParts) -> MarginParts:
        return MarginParts(
            self.span - other.span, self.exposure - other.exposure,
            self.option_premium - other.option_premium, self.var - other.var,
        )

    def scaled_span(self, factor: float) -> MarginParts:
        return attrs.evolve(self, span=self.span * factor, exposure=self.exposure * factor)


def leg_margin(leg: Leg) -> MarginParts:
    i = leg.instrument
    notional = leg.quantity * leg.price
    if i.instrument_type == "FUT":
        return MarginParts(span=0.09 * notional, exposure=0.03 * notional)
    if i.is_option:
        if leg.transaction_type == "BUY":
            return MarginParts(option_premium=notional)
        under = leg.quantity * leg.underlying_price
        return MarginParts(span=0.11 * under, exposure=0.04 * under)
    rate = MIS_RATE if leg.product == "MIS" else 1.0
    return MarginParts(var=rate * notional)


def delta_sign(leg: Leg) -> int:
    kind, side = leg.instrument.instrument_type, leg.transaction_type
    if kind in ("FUT", "CE"):
        return 1 if side == "BUY" else -1
    if kind == "PE":
        return -1 if side == "BUY" else 1
    return 0


def _is_margined(leg: Leg) -> bool:
    return leg.instrument.instrument_type == "FUT" or (
        leg.instrument.is_option and leg.transaction_type == "SELL"
    )


def hedged_total(legs: Iterable[Leg]) -> MarginParts:
    groups: dict[str, list[Leg]] = defaultdict(list)
    total = MarginParts()
    for leg in legs:
        if delta_sign(leg) == 0:
            total += leg_margin(leg)
        else:
            groups[leg.instrument.underlying].append(leg)
    for group in groups.values():
        plus = sum(leg.quantity for leg in group if delta_sign(leg) > 0)
        minus = sum(leg.quantity for leg in group if delta_sign(leg) < 0)
        margined = sum(leg.quantity for leg in group if _is_margined(leg))
        factor = 1.0
        if margined:
            factor = 1.0 - HEDGE_BENEFIT * min(1.0, min(plus, minus) / margined)
        for leg in group:
            total += leg_margin(leg).scaled_span(factor)
    return total


def charges(leg: Leg | None = None) -> dict[str, Any]:
    if leg is None:
        return _charges_dict(0.0, "", 0.0, 0.0, 0.0, 0.0)
    i, turnover = leg.instrument, leg.quantity * leg.price
    sell = leg.transaction_type == "SELL"
    if i.is_option:
        stt, exchange_fee = (0.001 * turnover if sell else 0.0), 0.0003503 * turnover
    elif i.instrument_type == "FUT":
        stt, exchange_fee = (0.0002 * turnover if sell else 0.0), 0.0000173 * turnover
    else:
        rate = 0.001 if leg.product != "MIS" else (0.00025 if sell else 0.0)
        stt, exchange_fee = rate * turnover, 0.0000297 * turnover
    stamp = 0.0 if sell else 0.00003 * turnover
    return _charges_dict(stt, "stt", exchange_fee, 0.000001 * turnover, 20.0, stamp)


def _charges_dict(
    stt: float, stt_type: str, exchange_fee: float, sebi: float, brokerage: float, stamp: float
) -> dict[str, Any]:
    gst = 0.18 * (brokerage + exchange_fee + sebi)
    return {
        "transaction_tax": stt,
        "transaction_tax_type": stt_type,
        "exchange_turnover_charge": exchange_fee,
        "sebi_turnover_charge": sebi,
        "brokerage": brokerage,
        "stamp_duty": stamp,
        "gst": {"igst": gst, "cgst": 0, "sgst": 0, "total": gst},
        "total": stt + exchange_fee + sebi + brokerage + stamp + gst,
    }


def _sum_charges(items: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("transaction_tax", "exchange_turnover_charge", "sebi_turnover_charge", "brokerage",
            "stamp_duty")
    out = charges()
    for key in keys:
        out[key] = sum(c[key] for c in items)
    gst = sum(c["gst"]["total"] for c in items)
    out["gst"] = {"igst": gst, "cgst": 0, "sgst": 0, "total": gst}
    out["total"] = sum(c["total"] for c in items)
    return out


def _margin_dict(
    parts: MarginParts, *, kind: str, leg: Leg | None, leverage: int, charge: dict[str, Any]
) -> dict[str, Any]:
    return {
        "type": kind,
        "tradingsymbol": leg.instrument.tradingsymbol if leg else "",
        "exchange": leg.instrument.exchange if leg else "",
        "span": parts.span,
        "exposure": parts.exposure,
        "option_premium": parts.option_premium,
        "additional": 0,
        "bo": 0,
        "cash": 0,
        "var": parts.var,
        "pnl": {"realised": 0, "unrealised": 0},
        "leverage": leverage,
        "charges": charge,
        "total": parts.total,
    }


def basket(
    legs: Sequence[Leg], *, held: Sequence[Leg] = (), opening: Sequence[Leg] | None = None
) -> dict[str, Any]:
    """The `data` of `POST /margins/basket` (keys as Kite's `basket_margins.json`).

    `legs` as ordered (their charges); `opening`: the same legs margined, reduced to what opens
    beyond the positions they close (default: `legs`); `held`: the account's portfolio, each
    figure then being the increase over its margin (`consider_positions`)."""
    margined = list(legs if opening is None else opening)
    base = hedged_total(held)
    per_leg = [hedged_total([*held, leg]) - base for leg in margined]
    leg_charges = [charges(leg) for leg in legs]
    initial = sum(per_leg, MarginParts())
    return {
        "initial": _margin_dict(initial, kind="", leg=None, leverage=0, charge=charges()),
        "final": _margin_dict(hedged_total([*held, *margined]) - base, kind="", leg=None,
                              leverage=0, charge=charges()),
        "orders": [
            _margin_dict(parts, kind="equity", leg=leg, leverage=1, charge=charge)
            for leg, parts, charge in zip(legs, per_leg, leg_charges, strict=True)
        ],
        "charges": _sum_charges(leg_charges),
    }
