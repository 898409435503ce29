"""An option chain: one underlying's calls and puts of one expiry, strikes around the money,
with their last prices, from which the page's ticket builds legs.

The contracts come from the instrument master (`InstrumentCache`, the one validation uses, so
every symbol offered is one the order path accepts), the prices from one Kite quote call
(`Broker.ltp`) for the expiry's future and its strikes. The money is the future's last price
(the same expiry's future, else the nearest one); an underlying without futures is priced by
put-call parity, the strike where call and put cost the same. A price the broker does not give
is null, never zero: a chain without prices still lists its strikes.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence

import attrs

from brokers.base import Broker, BrokerError

from .errors import BrokerUnavailable, FieldError, InvalidRequest
from .instruments import InstrumentCache, InstrumentInfo
from .requests import OptionChainQuery

__all__ = ["ChainQuote", "ChainStrike", "OptionChain", "option_chain"]

log = logging.getLogger("actors.chain")

EXCHANGE = "NFO"
#: Instruments per quote call (Kite answers at most 1,000).
QUOTE_BATCH = 500


@attrs.frozen
class ChainQuote:
    """One option of the chain."""

    tradingsymbol: str = attrs.field(metadata={"doc": "the option's trading symbol"})
    last_price: float | None = attrs.field(metadata={
        "doc": "its last price; null when the broker gave none"})


@attrs.frozen
class ChainStrike:
    """One strike: its call and its put (null where the master lists none)."""

    strike: float = attrs.field(metadata={"doc": "the strike price"})
    ce: ChainQuote | None = attrs.field(metadata={"doc": "the call"})
    pe: ChainQuote | None = attrs.field(metadata={"doc": "the put"})


@attrs.frozen
class OptionChain:
    """An underlying's options of one expiry, strikes around the money, with last prices."""

    underlying: str = attrs.field(metadata={"doc": "the underlying's name, e.g. NIFTY"})
    underlyings: list[str] = attrs.field(metadata={
        "doc": "every underlying with options in the master, by name (the page's picker)"})
    exchange: str = attrs.field(metadata={"doc": "where the options trade (NFO)"})
    expiry: str = attrs.field(metadata={"doc": "the expiry shown, YYYY-MM-DD"})
    expiries: list[str] = attrs.field(metadata={
        "doc": "every expiry of the underlying's options in the master, nearest first"})
    underlying_price: float | None = attrs.field(metadata={
        "doc": "the money: the future's last price, else the put-call parity estimate; null "
               "without prices"})
    priced_from: str = attrs.field(metadata={
        "doc": "what `underlying_price` is: the future's trading symbol, 'parity', or '' "
               "when unknown"})
    atm_strike: float = attrs.field(metadata={
        "doc": "the strike nearest the money (the middle one without prices)"})
    lot_size: int = attrs.field(metadata={"doc": "units per lot of these options"})
    tick_size: float = attrs.field(metadata={"doc": "their price step"})
    strikes: list[ChainStrike] = attrs.field(metadata={
        "doc": "`strikes` each side of the at-the-money strike, lowest first"})


async def option_chain(
    cache: InstrumentCache, broker: Broker, query: OptionChainQuery,
    today: Callable[[], dt.date],
) -> OptionChain:
    """The chain `query` asks for; InvalidRequest names an unknown underlying or expiry,
    BrokerUnavailable says the master cannot be had."""
    await _load(cache)
    name, day = query.underlying, today()
    calls = [i for i in cache.contracts(EXCHANGE, name, "CE") if _live(i, day)]
    puts = [i for i in cache.contracts(EXCHANGE, name, "PE") if _live(i, day)]
    if not calls and not puts:
        names = _underlyings(cache)
        listed = ", ".join(names[:20]) + (", …" if len(names) > 20 else "")
        raise InvalidRequest([FieldError("underlying", "unknown", (
            f"no {EXCHANGE} options of {name!r} in the instrument master; underlyings: "
            f"{listed}"))])
    expiries = sorted({i.expiry for i in (*calls, *puts) if i.expiry})
    expiry = dt.date.fromisoformat(query.expiry) if query.expiry else expiries[0]
    if expiry not in expiries:
        raise InvalidRequest([FieldError("expiry", "unknown", (
            f"no {name} options expire on {expiry.isoformat()}; expiries: "
            f"{', '.join(e.isoformat() for e in expiries)}"))])
    sides: dict[float, dict[str, InstrumentInfo]] = {}
    for i in (*calls, *puts):
        if i.expiry == expiry:
            sides.setdefault(i.strike, {})[i.instrument_type] = i
    future = _future(cache.contracts(EXCHANGE, name, "FUT"), expiry, day)
    symbols = [i.tradingsymbol for s in sides.values() for i in s.values()]
    prices = await _prices(broker, [*symbols, *([future.tradingsymbol] if future else [])])
    strikes = sorted(sides)
    spot, source = _money(future, sides, prices)
    atm = (min(strikes, key=lambda k: (abs(k - spot), k)) if spot is not None
           else strikes[len(strikes) // 2])
    at = strikes.index(atm)
    shown = strikes[max(0, at - query.strikes):at + query.strikes + 1]
    first = next(iter(sides[atm].values()))
    return OptionChain(
        underlying=name, underlyings=_underlyings(cache), exchange=EXCHANGE,
        expiry=expiry.isoformat(), expiries=[e.isoformat() for e in expiries],
        underlying_price=spot, priced_from=source, atm_strike=atm, lot_size=first.lot_size,
        tick_size=first.tick_size,
        strikes=[ChainStrike(k, _quote(sides[k].get("CE"), prices),
                             _quote(sides[k].get("PE"), prices)) for k in shown],
    )


async def _load(cache: InstrumentCache) -> None:
    try:
        await cache.load((EXCHANGE,))
    except BrokerError as exc:  # a stale master still makes a chain
        if not cache.loaded(EXCHANGE):
            raise BrokerUnavailable(f"the broker's instrument list is unavailable: {exc}") from exc
        log.warning("option chain: instruments not refreshed: %r", exc)


def _live(i: InstrumentInfo, today: dt.date) -> bool:
    return i.expiry is not None and i.expiry >= today


def _underlyings(cache: InstrumentCache) -> list[str]:
    return sorted({i.name for i in cache.loaded(EXCHANGE) if i.instrument_type in ("CE", "PE")})


def _future(futures: Sequence[InstrumentInfo], expiry: dt.date,
            today: dt.date) -> InstrumentInfo | None:
    """The same expiry's future, else the nearest one still trading."""
    live = [f for f in futures if _live(f, today)]
    return next((f for f in live if f.expiry == expiry), live[0] if live else None)


async def _prices(broker: Broker, symbols: Sequence[str]) -> dict[str, float]:
    """Last prices by trading symbol; none when the broker cannot say (the chain still shows)."""
    found: dict[str, float] = {}
    try:
        for start in range(0, len(symbols), QUOTE_BATCH):
            keys = [f"{EXCHANGE}:{s}" for s in symbols[start:start + QUOTE_BATCH]]
            for key, price in (await broker.ltp(keys)).items():
                found[key.partition(":")[2]] = price
    except BrokerError as exc:
        log.warning("option chain: no last prices: %r", exc)
    return found


def _money(future: InstrumentInfo | None, sides: dict[float, dict[str, InstrumentInfo]],
           prices: dict[str, float]) -> tuple[float | None, str]:
    """Where the money is, and from what: the future, else put-call parity."""
    if future is not None and future.tradingsymbol in prices:
        return prices[future.tradingsymbol], future.tradingsymbol
    pairs = [(k, prices[s["CE"].tradingsymbol], prices[s["PE"].tradingsymbol])
             for k, s in sides.items() if "CE" in s and "PE" in s
             and s["CE"].tradingsymbol in prices and s["PE"].tradingsymbol in prices]
    if not pairs:
        return None, ""
    strike, call, put = min(pairs, key=lambda p: abs(p[1] - p[2]))
    return round(strike + call - put, 2), "parity"


def _quote(i: InstrumentInfo | None, prices: dict[str, float]) -> ChainQuote | None:
    return None if i is None else ChainQuote(i.tradingsymbol, prices.get(i.tradingsymbol))
