"""`serve_venue`: the venue (venue.py) loaded, restored and served on one port."""

from __future__ import annotations

import datetime as dt
import logging
from functools import partial
from urllib.parse import urlsplit

import hypercorn.trio
import trio
from hypercorn.config import Config as HyperConfig

from . import state
from .app import create_app
from .config import IST, VenueAddress, VenueConfig
from .instruments import InstrumentMaster, builtin_master, load_csv
from .venue import Venue

log = logging.getLogger(__name__)


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
