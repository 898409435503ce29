"""Where an account's positions come from: its own fills plus what the broker says.

The day's quantities and values are summed from the order book's fills (each order's cumulative
`filled_quantity` at its `average_price`), so a fill is counted once however often it is pushed,
listed or reconciled, and whether it arrives before, during or after a positions fetch. The
broker's `/portfolio/positions` adds what fills cannot say: the multiplier, the instrument token,
the close price and the overnight quantity (carried in at the close price). A fetch that saw no
fill change while it was under way is compared with the fills; a difference that two such
fetches in a row find alike (not a fill still on its way from the ticker) is the broker's side:
kept as an adjustment, and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from brokers.base import Position

from .positions import PositionTotals, PositionView, position_view

__all__ = ["PositionBook", "fill_changed", "fill_totals"]

log = logging.getLogger("actors.account.positions")

Key = tuple[str, str, str]  # exchange, tradingsymbol, product


def _key(row: Mapping[str, Any]) -> Key:
    return (str(row.get("exchange") or ""), str(row.get("tradingsymbol") or ""),
            str(row.get("product") or ""))


def fill_totals(
    payloads: Iterable[Mapping[str, Any]], multipliers: Mapping[Key, float]
) -> tuple[dict[Key, PositionTotals], dict[Key, int]]:
    """The day's totals per position from the orders' fills, and each position's token."""
    sums: dict[Key, list[float]] = {}  # bought, paid, sold, received: summed in place
    tokens: dict[Key, int] = {}
    for order in payloads:
        filled = int(order.get("filled_quantity") or 0)
        if filled <= 0:
            continue
        key = _key(order)
        value = filled * float(order.get("average_price") or 0.0) * multipliers.get(key, 1.0)
        row = sums.get(key)
        if row is None:
            row = sums[key] = [0, 0.0, 0, 0.0]
        side = 0 if order.get("transaction_type") == "BUY" else 2
        row[side] += filled
        row[side + 1] += value
        token = order.get("instrument_token")
        if token:
            tokens[key] = int(token)
    totals = {key: PositionTotals(buy_quantity=int(b), buy_value=bv, sell_quantity=int(s),
                                  sell_value=sv) for key, (b, bv, s, sv) in sums.items()}
    return totals, tokens


def fill_changed(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> bool:
    """Whether an order update moved its filled quantity (a fill the positions count)."""
    was = before.get("filled_quantity") if before is not None else 0
    return bool(after.get("filled_quantity")) and after.get("filled_quantity") != was


def _day_totals(p: Position) -> PositionTotals:
    """The broker's day part of a position (its day_* fields, or the totals less overnight)."""
    if p.day_buy_quantity is not None and p.day_sell_quantity is not None:
        return PositionTotals(buy_quantity=p.day_buy_quantity,
                              buy_value=p.day_buy_value or 0.0,
                              sell_quantity=p.day_sell_quantity,
                              sell_value=p.day_sell_value or 0.0)
    return PositionTotals(buy_quantity=p.buy_quantity, buy_value=p.buy_value,
                          sell_quantity=p.sell_quantity, sell_value=p.sell_value
                          ) - _overnight(p)


def _overnight(p: Position) -> PositionTotals:
    held, value = p.overnight_quantity, abs(p.overnight_quantity) * p.close_price * p.multiplier
    if held > 0:
        return PositionTotals(buy_quantity=held, buy_value=value)
    if held < 0:
        return PositionTotals(sell_quantity=-held, sell_value=value)
    return PositionTotals()


class PositionBook:
    """An account's positions: the broker's last word, the fills, the last prices."""

    def __init__(self) -> None:
        self._broker: dict[Key, Position] = {}
        self._adjustments: dict[Key, PositionTotals] = {}
        self._differences: dict[Key, PositionTotals] = {}  # found by the last still fetch
        self._ltp: dict[int, float] = {}
        self.fill_version = 0  # grows whenever an order's filled quantity changes

    def fills_changed(self) -> None:
        self.fill_version += 1

    def set_ltp(self, token: int, price: float) -> bool:
        """A last price; True when it changed."""
        if self._ltp.get(token) == price:
            return False
        self._ltp[token] = price
        return True

    def ltp(self, token: int) -> float | None:
        """The last price of any subscribed instrument, None until its first tick."""
        return self._ltp.get(token)

    def forget_prices(self) -> None:
        """Market data lost: every price is unknown again until the next tick."""
        self._ltp.clear()

    def reconcile(self, positions: list[Position], payloads: Iterable[Mapping[str, Any]],
                  *, fills_stable: bool, account: str) -> None:
        """The broker's positions, fetched while the fills stood still (`fills_stable`) or not:
        only a still fetch is compared with the fills, the broker's side taken on a
        difference."""
        self._broker = {(p.exchange, p.tradingsymbol, p.product): p for p in positions}
        if not fills_stable:
            return
        fills, _ = fill_totals(payloads, self._multipliers())
        differences: dict[Key, PositionTotals] = {}
        for key in set(fills) | set(self._broker):
            broker = self._broker.get(key)
            theirs = _day_totals(broker) if broker is not None else PositionTotals()
            ours = fills.get(key, PositionTotals())
            difference = theirs - ours
            if difference.is_zero():
                continue
            differences[key] = difference
            if self._differences.get(key) == difference != self._adjustments.get(key):
                log.warning("account %s: position %s disagrees with the broker's (fills %s, "
                            "broker %s): taking the broker's", account, ":".join(key), ours,
                            theirs)
        self._adjustments = {key: difference for key, difference in differences.items()
                             if self._differences.get(key) == difference}
        self._differences = differences

    def views(self, payloads: Iterable[Mapping[str, Any]]) -> list[PositionView]:
        fills, tokens = fill_totals(payloads, self._multipliers())
        views = []
        for key in sorted(set(fills) | set(self._broker) | set(self._adjustments)):
            broker = self._broker.get(key)
            totals = fills.get(key, PositionTotals()) + self._adjustments.get(
                key, PositionTotals())
            if broker is not None:
                totals = totals + _overnight(broker)
            token = tokens.get(key) or (broker.instrument_token if broker else 0)
            if totals.is_zero():
                continue
            views.append(position_view(
                key, totals, instrument_token=token,
                multiplier=broker.multiplier if broker else 1.0,
                close_price=broker.close_price if broker else 0.0,
                ltp=self._ltp.get(token)))
        return views

    def held_tokens(self, nets: Mapping[Key, Sequence[int]]) -> set[int]:
        """The instruments of the positions `views` shows with a quantity, from the book's
        net fills per position ([units bought less sold, token]) instead of every order's:
        what the market subscriptions follow, asked after every burst of updates."""
        held = set()
        for key in set(nets) | set(self._broker) | set(self._adjustments):
            net, token = nets.get(key, (0, 0))
            adjustment = self._adjustments.get(key)
            if adjustment is not None:
                net += adjustment.buy_quantity - adjustment.sell_quantity
            broker = self._broker.get(key)
            if broker is not None:
                net += broker.overnight_quantity
            if net:
                held.add(token or (broker.instrument_token if broker else 0))
        return held

    def _multipliers(self) -> dict[Key, float]:
        return {k: p.multiplier for k, p in self._broker.items()}

