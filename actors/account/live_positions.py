"""An account actor's positions side: the broker's positions fetched after each reconcile (once
no other account's reconcile is pending in the process, or 2 s at most), the market ticks of
the instruments that move its P&L, and the throttled `positions` messages.

Market data comes on the account's own ticker connection: the instruments of open positions and
working orders, and those a subscriber watches (`set_watched`), are subscribed once each per
connection, counted by who wants them (`TokenRefs`), and all subscribed again on every new
connection. A stream that cannot subscribe (no market data) leaves every price unknown: P&L
null, never zero.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import trio

from brokers.base import Broker, BrokerError

from .config import ActorConfig
from .frames import positions_frame, with_watched
from .position_book import PositionBook
from .positions import PositionsReport, report_of
from .reconnect import reconciles_settled
from .subscribers import SubscriberSet, Subscription

__all__ = ["LivePositions", "TokenRefs"]

log = logging.getLogger("actors.account.positions")

#: How long `follow_market` lets order updates gather before it looks at the book again.
_ORDERS_SETTLE_S = 0.25
#: At most this long a positions fetch waits for the process's pending reconciles (a
#: takeover's, a reconnect wave's) to finish: they come first, as they make accounts live.
_FETCH_DEFER_MAX_S = 2.0

_WORKING = ("OPEN", "TRIGGER PENDING", "AMO REQ RECEIVED", "MODIFY PENDING", "PUT ORDER REQ "
            "RECEIVED", "VALIDATION PENDING", "OPEN PENDING")


class TokenRefs:
    """The instruments one upstream connection should be subscribed to, each counted by the
    sources that want it (open positions, working orders, each watching subscriber):
    subscribed while any does."""

    def __init__(self) -> None:
        self._sources: dict[str, frozenset[int]] = {}
        self._counts: Counter[int] = Counter()

    def update(self, source: str, tokens: Iterable[int]) -> bool:
        """What `source` wants now; True when the set of instruments wanted changed."""
        new = frozenset(t for t in tokens if t)
        old = self._sources.get(source, frozenset())
        self._sources[source] = new
        self._counts.update(new - old)
        self._counts.subtract(old - new)
        gone = [t for t in old - new if self._counts[t] <= 0]
        for token in gone:
            del self._counts[token]
        return bool(gone) or any(self._counts[t] == 1 for t in new - old)

    def count(self, token: int) -> int:
        return self._counts.get(token, 0)

    def wanted(self) -> set[int]:
        return set(self._counts)


class LivePositions:
    """Positions, prices and subscriptions of one account; the actor calls in."""

    def __init__(self, account: str, broker: Broker, config: ActorConfig,
                 subscribers: SubscriberSet,
                 payloads: Callable[[], Sequence[Mapping[str, Any]]]) -> None:
        self.account = account
        self._broker = broker
        self._config = config
        self._subscribers = subscribers
        self._payloads = payloads
        self.book = PositionBook()
        self.refs = TokenRefs()
        self.subscribed: set[int] = set()  # on the current connection
        self.fetches = 0  # positions fetched from the broker (tests wait on it)
        self._moved = trio.Event()  # something the P&L depends on changed
        self._fetch = trio.Event()  # fetch the broker's positions
        self._market = trio.Event()  # the instruments wanted changed
        self._settled = trio.Event()  # wanted or subscribed changed (`until` waits on it)
        self._orders_moved = False  # updates since the instruments wanted were worked out

    def report(self) -> PositionsReport:
        return report_of(self.account, self.book.views(self._payloads()))

    def message(self) -> str:
        return positions_frame(self.report())

    def message_for(self, sub: Subscription, message: str) -> str:
        """`message` (positions) with the subscriber's own watched instruments and prices."""
        return with_watched(message, [
            (exchange, symbol, token, self.book.ltp(token))
            for token, (exchange, symbol) in sub.watched.items()])

    def set_watched(self, sub: Subscription, watched: Mapping[int, tuple[str, str]]) -> None:
        """What `sub` watches now (token -> exchange, tradingsymbol): subscribed on the
        upstream connection while any source wants it, released when none does."""
        sub.watched = dict(watched)
        if self.refs.update(f"watch:{sub.id}", sub.watched):
            self._market.set()
        self._moved.set()
        self._settle()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` (about `refs` and `subscribed`) holds: checked again each
        time either changes (tests wait on it)."""
        while not condition():
            await self._settled.wait()

    def _settle(self) -> None:
        self._settled.set()
        self._settled = trio.Event()

    def release(self, sub: Subscription) -> None:
        """A subscriber gone: what it watched is no longer wanted for it."""
        if sub.watched:
            self.set_watched(sub, {})

    # -- what the actor tells it ------------------------------------------------------

    def orders_changed(self, *, filled: bool) -> None:
        """Updates committed (`filled`: some order's filled quantity moved). Cheap, as it runs
        for every update: the instruments they make wanted (a look at the whole book) are
        worked out by `follow_market`, at most once per `_ORDERS_SETTLE_S` however many came;
        the P&L is woken only when someone wants it."""
        if filled:
            self.book.fills_changed()
        self._orders_moved = True
        self._market.set()
        if self._subscribers.want_positions():
            self._moved.set()

    def reconciled(self) -> None:
        self._fetch.set()

    def on_prices(self, prices: Iterable[tuple[int, float]]) -> None:
        """A frame's (instrument token, last price) pairs."""
        moved = False
        set_ltp = self.book.set_ltp
        for token, price in prices:
            moved = set_ltp(token, price) or moved
        if moved:
            self._moved.set()

    def _want_instruments(self) -> None:
        payloads = self._payloads()
        held = {v.instrument_token for v in self.book.views(payloads) if v.quantity}
        working = {int(o["instrument_token"]) for o in payloads
                   if o.get("status") in _WORKING and o.get("instrument_token")}
        changed = self.refs.update("positions", held)
        if self.refs.update("orders", working) or changed:
            self._market.set()

    # -- its tasks --------------------------------------------------------------------

    async def fetch_when_wanted(self) -> None:
        """The broker's positions after each reconcile, beside the frames: fills go on being
        applied while a fetch is under way (it is compared with them only if none came)."""
        while True:
            await self._fetch.wait()
            await reconciles_settled(_FETCH_DEFER_MAX_S)
            self._fetch = trio.Event()
            version = self.book.fill_version
            try:
                positions = await self._broker.positions()
            except BrokerError as exc:  # the next reconcile asks again
                log.warning("account %s: positions not fetched: %s: %s", self.account,
                            type(exc).__name__, exc)
                continue
            self.book.reconcile(positions, self._payloads(), account=self.account,
                                fills_stable=version == self.book.fill_version)
            self.fetches += 1
            self._want_instruments()
            self._moved.set()

    async def follow_market(self, stream: Any) -> None:
        """Keep this connection subscribed to the instruments wanted; prices start unknown."""
        self.subscribed = set()
        self.book.forget_prices()
        self._moved.set()
        if getattr(stream, "subscribe", None) is None:
            return  # no market data on this stream: LTP stays unavailable
        stream.on_prices = self.on_prices
        self._orders_moved = True
        try:
            while True:
                if self._orders_moved:
                    self._orders_moved = False
                    self._want_instruments()
                wanted = self.refs.wanted()
                await stream.unsubscribe(sorted(self.subscribed - wanted))
                await stream.subscribe(sorted(wanted - self.subscribed))
                self.subscribed = wanted
                self._settle()
                await self._market.wait()
                self._market = trio.Event()
                if self._orders_moved:  # let a burst of updates land: one look at the book
                    await trio.sleep(_ORDERS_SETTLE_S)
        except BrokerError as exc:  # the stream is going: its reader reconnects
            log.info("account %s: market subscription lost: %s", self.account, exc)

    async def publish(self) -> None:
        """`positions` messages to the subscribers who asked, at most `positions_max_rate_hz`
        a second; each keeps only the latest (`Subscription.set_latest`)."""
        interval = 1.0 / self._config.positions_max_rate_hz
        while True:
            await self._moved.wait()
            self._moved = trio.Event()
            if self._subscribers.want_positions():
                self._subscribers.publish_latest(self.message(), self.message_for)
                await trio.sleep(interval)
