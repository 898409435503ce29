"""The account's upstream connection as the actor reports it, and the pump that moves its ticker
frames into the actor's held queue (`opening.py` opens it)."""

from __future__ import annotations

from typing import Any

import attrs
import trio

from brokers.base import BrokerError, Order

from ..health import UpstreamWatch

__all__ = ["UpstreamState", "pump_frames"]


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
