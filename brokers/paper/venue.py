"""The venue's parts wired together: `Venue`, what one running venue owns and the HTTP layer
(app.py, control.py, login.py) talks to."""

from __future__ import annotations

import json
import time

from .accounts import Accounts
from .book import Order, postback
from .config import VenueConfig
from .engine import Engine
from .faults import Faults
from .instruments import InstrumentMaster
from .keeper import StateKeeper
from .limits import RequestLimits
from .market import MarketData
from .request_tokens import RequestTokens
from .ticker import TickerHub


class Venue:
    """Everything one running venue owns; the HTTP layer talks to it."""

    def __init__(self, config: VenueConfig, master: InstrumentMaster) -> None:
        self.config = config
        self.master = master
        self.faults = Faults()
        self.hub = TickerHub()
        self.accounts = Accounts(config.accounts)
        self.request_tokens = RequestTokens()
        self.limits = RequestLimits(
            writes_per_s=config.rate_limit_per_s, writes_per_minute=config.rate_limit_per_minute,
            writes_per_day=config.rate_limit_per_day,
            modifications_per_order=config.modifications_per_order,
            reads_per_s=config.read_limit_per_s,
        )
        self.engine = Engine(config, master, self.faults, self._publish)
        self.market = MarketData(master, self.engine.prices, config.ticker_connections_per_key)
        #: With a state file, frames and answers wait until what they report is on disk.
        self.keeper = (StateKeeper(self.engine, config.state_file, self.hub.publish)
                       if config.state_file is not None else None)

    def _publish(self, account: str, order: Order, status: str) -> None:
        if self.faults.drops_order_frame():
            return  # lost on the way, the socket kept open (fault: drop_order_frames_ratio)
        frame = {"type": "order", "data": postback(order.to_kite(status))}
        frame["data"]["meta"] = {"emitted_at": time.time()}  # bench/fanout.py: emit-to-receive
        if self.keeper is not None:
            self.keeper.emit(account, json.dumps(frame))
        else:
            self.hub.publish(account, json.dumps(frame))

    async def durable(self) -> None:
        """Return once every change so far is saved (at once without a state file)."""
        if self.keeper is not None:
            await self.keeper.durable()

    def reset(self) -> None:
        """Fresh state: no orders or positions, no faults, initial prices, tokens and hours."""
        self.market.reset()
        self.engine.reset()
        self.faults.clear()
        self.hub.stalled = False
        self.accounts.reset()
        self.request_tokens.reset()
        self.limits.reset()
