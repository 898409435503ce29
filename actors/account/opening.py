"""How an account's ticker connection is opened: through the process's pacer (`open_paced`), or,
right after a takeover, taken over from a warm standby (`WarmStream`).

[cluster] warm standby: while this node stands by for an account, one ticker connection is held
open for it, so that taking the account over does not wait for a connect.

A takeover of N accounts used to open N ticker sockets on the new owner, paced by the process's
`ConnectPacer` (200 a second: one second for 200 accounts), each handshake costing the new owner
and the broker CPU while the new owner reconciles and its subscribers come back (issue 18). With
a warm standby, `keep()` (the standby's task) opens the connection through the same pacer long
before, reads and drops its frames, and opens it again after a loss (with backoff). Nothing read
there is applied: once the node has the account, `keep` is cancelled with `handing` set and
keeps the open connection instead of closing it; the actor's first follow `take`s it instead of
connecting, starts reading it, and only then lists the orders (the reconcile): every frame
dropped before came before that listing, which shows what it said.

Kite allows 3 ticker connections per api_key; a warm standby holds a second one per account
(the owner's is the first), so it is a setting: `[cluster] warm_standby`, off by default.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from brokers.base import Broker, BrokerError, TokenExpired

from ..backoff import Backoff
from ..connect_pacer import ConnectPacer

__all__ = ["WarmStream", "open_paced"]

log = logging.getLogger("actors.account")


class WarmStream:
    """One account's kept connection on a standby node (see the module)."""

    def __init__(self, account: str, broker: Broker, pacer: ConnectPacer | None,
                 backoff: Backoff) -> None:
        self.account = account
        self._broker = broker
        self._pacer = pacer
        self._backoff = backoff
        #: Set (by the owner) just before `keep` is cancelled because the node took the
        #: account: the open connection is kept for `take` instead of closed.
        self.handing = False
        self._kept: tuple[Any, AsyncExitStack] | None = None
        self.opened = 0  # connections opened while standing by
        self.taken = 0  # connections the actor took over

    async def keep(self) -> None:
        """Until cancelled: hold one connection open, its frames dropped."""
        while True:
            if await self._hold_one():
                self._backoff.reset()
            await trio.sleep(self._backoff.next())

    async def _hold_one(self) -> bool:
        """Open a connection and drain it until it is lost (False: it did not open)."""
        async with AsyncExitStack() as stack:
            opening = open_paced(self._broker, self._pacer)
            try:
                stream = await stack.enter_async_context(opening)
            except TokenExpired:  # the owner loads the day's token when it takes the account
                return False
            except BrokerError as exc:
                log.info("account %s: standby connection not opened: %s", self.account, exc)
                return False
            self.opened += 1
            try:
                async for _ in stream:  # dropped: the takeover's reconcile lists them
                    pass
            except BrokerError:
                pass
            except trio.Cancelled:
                if self.handing:  # the stack's close moves with it
                    self._kept = (stream, stack.pop_all())
                raise
        return True

    @asynccontextmanager
    async def take(self) -> AsyncIterator[Any | None]:
        """The connection kept for the takeover (None: none), closed when the block ends."""
        kept, self._kept = self._kept, None
        self.handing = False
        if kept is None:
            yield None
            return
        stream, stack = kept
        self.taken += 1
        async with stack:
            yield stream

    async def discard(self) -> None:
        """Close a kept connection no actor took (the ownership ended before its follow)."""
        self.handing = False
        if self._kept is not None:
            _, stack = self._kept
            self._kept = None
            with trio.CancelScope(shield=True):
                await stack.aclose()


@asynccontextmanager
async def open_paced(broker: Broker, pacer: ConnectPacer | None,
                     warm: WarmStream | None = None) -> AsyncIterator[Any]:
    """`broker.open_stream()`, its handshake paced by the process's `pacer` (None: at once);
    the pacer's slot is given back as soon as the stream is open. The connection a warm
    standby kept for the takeover (`warm`), if any, comes first, at once."""
    if warm is not None:
        async with warm.take() as kept:
            if kept is not None:
                yield kept
                return
    async with AsyncExitStack() as stack:
        if pacer is None:
            stream = await stack.enter_async_context(broker.open_stream())
        else:
            async with pacer.connecting():
                stream = await stack.enter_async_context(broker.open_stream())
        yield stream
