"""The account's upstream connection as the actor reports it, its paced opening, and the pump
that moves its ticker frames into the actor's held queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio

from brokers.base import Broker, BrokerError, Order

from ..connect_pacer import ConnectPacer
from ..health import UpstreamWatch

if TYPE_CHECKING:
    from .warm import WarmStream

__all__ = ["UpstreamState", "open_paced", "pump_frames"]


@attrs.define
class UpstreamState:
    """What health and subscribers are told about the upstream connection."""

    state: str = "starting"  # connected | reconnecting | auth_expired | starting
    reconnects: int = 0
    last_error: str | None = None
    last_event_at: float | None = None  # wall clock of the last committed update


async def pump_frames(
    stream: Any,
    held: trio.MemorySendChannel[Order],
    lost: list[BrokerError],
    watch: UpstreamWatch,
) -> None:
    """Ticker frames into the held queue; its end (and why) tells the actor to reconnect."""
    async with held:
        try:
            async for order in stream:
                await held.send(order)
        except BrokerError as exc:
            lost.append(exc)
        finally:
            watch.stream_ended()


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
