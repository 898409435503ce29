"""An account's net positions and their P&L, as `GET /accounts/{id}/positions` and the order
websocket's `positions` messages show them.

Kite's formula: `pnl = (sell_value - buy_value) + quantity * ltp * multiplier`, where
`multiplier` is the broker position's own field (1 on NFO, whose quantities are units), never
the lot size. Without a last price the P&L is unknown (null), never zero: `realised` (what the
closed part made) needs no price, `unrealised` and `pnl` do.
"""

from __future__ import annotations

import attrs

__all__ = ["PositionTotals", "PositionView", "PositionsReport", "position_view", "report_of"]


def _doc(text: str) -> object:
    return attrs.field(metadata={"doc": text})


@attrs.frozen(kw_only=True)
class PositionTotals:
    """What one instrument and product were bought and sold for (values include multiplier)."""

    buy_quantity: int = 0
    buy_value: float = 0.0
    sell_quantity: int = 0
    sell_value: float = 0.0

    def __add__(self, other: PositionTotals) -> PositionTotals:
        return PositionTotals(
            buy_quantity=self.buy_quantity + other.buy_quantity,
            buy_value=self.buy_value + other.buy_value,
            sell_quantity=self.sell_quantity + other.sell_quantity,
            sell_value=self.sell_value + other.sell_value,
        )

    def __sub__(self, other: PositionTotals) -> PositionTotals:
        return self + PositionTotals(
            buy_quantity=-other.buy_quantity, buy_value=-other.buy_value,
            sell_quantity=-other.sell_quantity, sell_value=-other.sell_value,
        )

    def is_zero(self) -> bool:
        return (self.buy_quantity == 0 and self.sell_quantity == 0
                and abs(self.buy_value) < 1e-6 and abs(self.sell_value) < 1e-6)


@attrs.frozen(kw_only=True)
class PositionView:
    """One net position (instrument and product) with its mark-to-market P&L."""

    exchange: str = _doc("the exchange, e.g. NFO")
    tradingsymbol: str = _doc("the instrument's trading symbol")
    product: str = _doc("NRML, MIS or CNC")
    instrument_token: int = _doc("the instrument's token (0 when not yet known)")
    quantity: int = _doc("net units held: bought minus sold; short below 0")
    average_price: float = _doc("the average price of the open quantity (0 when flat)")
    buy_quantity: int = _doc("units bought (the overnight quantity held long included)")
    sell_quantity: int = _doc("units sold (the overnight quantity held short included)")
    buy_value: float = _doc("what was paid: units x price x multiplier (overnight quantity "
                            "at the previous close)")
    sell_value: float = _doc("what was received: units x price x multiplier (overnight "
                             "quantity at the previous close)")
    multiplier: float = _doc("the broker position's multiplier (1 on NFO)")
    close_price: float = _doc("the previous day's close: what overnight positions are marked "
                              "from")
    ltp: float | None = _doc("the last traded price; null when no market data is available")
    realised: float = _doc("P&L of the quantity already closed")
    unrealised: float | None = _doc("P&L of the open quantity at ltp; null without ltp")
    pnl: float | None = _doc("(sell_value - buy_value) + quantity x ltp x multiplier; null "
                             "without ltp (never 0 for a missing price)")


@attrs.frozen(kw_only=True)
class PositionsReport:
    """An account's positions: the body of `GET /accounts/{id}/positions`."""

    account: str = _doc("the account")
    ltp_available: bool = _doc("whether every open position has a last price (false: some "
                               "P&L is null)")
    total_pnl: float | None = _doc("the sum of every position's pnl; null when any open "
                                   "position has no ltp")
    positions: list[PositionView] = _doc("one per instrument and product traded today or held "
                                         "overnight")


def _round(value: float) -> float:
    return round(value, 4) + 0.0  # no -0.0


def position_view(
    key: tuple[str, str, str],
    totals: PositionTotals,
    *,
    instrument_token: int,
    multiplier: float,
    close_price: float,
    ltp: float | None,
) -> PositionView:
    """Kite's arithmetic on one position's totals."""
    exchange, tradingsymbol, product = key
    quantity = totals.buy_quantity - totals.sell_quantity
    if quantity > 0:
        average = totals.buy_value / (totals.buy_quantity * multiplier)
    elif quantity < 0:
        average = totals.sell_value / (totals.sell_quantity * multiplier)
    else:
        average = 0.0
    cash = totals.sell_value - totals.buy_value
    realised = cash + quantity * average * multiplier
    if ltp is None:
        unrealised = pnl = None
    else:
        pnl = _round(cash + quantity * ltp * multiplier)
        unrealised = _round(quantity * (ltp - average) * multiplier)
    return PositionView(
        exchange=exchange, tradingsymbol=tradingsymbol, product=product,
        instrument_token=instrument_token, quantity=quantity,
        average_price=_round(average), buy_quantity=totals.buy_quantity,
        sell_quantity=totals.sell_quantity, buy_value=_round(totals.buy_value),
        sell_value=_round(totals.sell_value), multiplier=multiplier, close_price=close_price,
        ltp=ltp, realised=_round(realised), unrealised=unrealised, pnl=pnl,
    )


def report_of(account: str, positions: list[PositionView]) -> PositionsReport:
    """The account's report: the total is known only when every open position has a price."""
    missing = any(p.pnl is None and p.quantity != 0 for p in positions)
    total = None if missing else _round(sum(
        p.pnl if p.pnl is not None else p.realised for p in positions))
    return PositionsReport(account=account, ltp_available=not missing, total_pnl=total,
                           positions=positions)
