"""The venue's parts wired together, and `serve_venue`, which serves them on one port."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from functools import partial
from urllib.parse import urlsplit

import hypercorn.trio
import trio
from hypercorn.config import Config as HyperConfig

from . import state
from .accounts import Accounts
from .app import create_app
from .book import Order, postback
from .config import IST, VenueAddress, VenueConfig
from .engine import Engine
from .faults import Faults
from .instruments import InstrumentMaster, builtin_master, load_csv
from .keeper import StateKeeper
from .limits import RequestLimits
from .login import RequestTokens
from .market import MarketData
from .ticker import TickerHub

log = logging.getLogger(__name__)


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


async def load_master(config: VenueConfig) -> InstrumentMaster:
    if config.instruments_csv is None:
        return builtin_master(dt.datetime.now(IST).date(), config.freeze_limits)
    text = await trio.Path(config.instruments_csv).read_text(encoding="utf-8")
    return load_csv(text, config.freeze_limits)


async def serve_venue(
    config: VenueConfig, *, task_status: trio.TaskStatus[VenueAddress] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the paper venue until cancelled; `task_status.started(VenueAddress)` once listening."""
    venue = Venue(config, await load_master(config))
    seq = 0
    if config.state_file is not None:
        saved = await state.load(config.state_file)
        if saved is not None:
            state.restore(venue.engine, saved, venue.master)
            seq = int(saved["seq"])
    app = create_app(venue)
    hyper = HyperConfig()
    hyper.bind = [config.bind]
    hyper.accesslog = None
    hyper.errorlog = log
    hyper.graceful_timeout = 0.5
    async with trio.open_nursery() as nursery:
        if venue.keeper is not None:
            await nursery.start(venue.keeper.run, seq)
        await nursery.start(venue.engine.run)
        binds = await nursery.start(partial(hypercorn.trio.serve, app, hyper, mode="asgi"))
        url = urlsplit(binds[0])
        assert url.hostname is not None and url.port is not None
        task_status.started(VenueAddress(url.hostname, url.port))
