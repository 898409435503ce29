"""What changed in the engine since the state keeper last saved: the orders and positions
touched, or a reset (then everything), up to a version that grows at every change. A venue
without a state file has no keeper: nothing takes them, so they are not kept (an id per order
of the day otherwise)."""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import trio

from .book import Order, Position

PositionKey = tuple[str, str, str]  # account, instrument key, product


@attrs.frozen
class Changes:
    """Orders and positions changed up to engine version `version` (live objects: serialise
    them before the next await). `reset`: everything went, save the whole state."""

    version: int
    reset: bool
    orders: list[Order]
    positions: list[Position]


class ChangeLog:
    def __init__(self) -> None:
        #: Grows at every change of orders or positions: the state keeper saves up to a version.
        self.version = 0
        self._changed = trio.Event()
        self._orders: set[str] = set()
        self._positions: set[PositionKey] = set()
        self._reset = False
        self._taken = False  # until a keeper takes the first changes (its first save is whole)

    def order(self, order_id: str) -> None:
        if self._taken:
            self._orders.add(order_id)
        self._touch()

    def position(self, key: PositionKey) -> None:
        """Counted with the order change that comes with it (a fill records its order)."""
        if self._taken:
            self._positions.add(key)

    def reset(self) -> None:
        self._reset = True
        self._touch()

    async def wait(self) -> None:
        """Return once orders or positions changed since the last call returned."""
        await self._changed.wait()
        self._changed = trio.Event()

    def take(
        self, orders: Mapping[str, Order], positions: Mapping[PositionKey, Position]
    ) -> Changes:
        """What changed since the last call (a reset: everything), as of `version`. Before
        the first call nothing is kept: the taker saves the whole state first."""
        self._taken = True
        changes = Changes(
            self.version, self._reset,
            [orders[i] for i in sorted(self._orders) if i in orders],
            [positions[k] for k in sorted(self._positions) if k in positions],
        )
        self._orders, self._positions, self._reset = set(), set(), False
        return changes

    def _touch(self) -> None:
        self.version += 1
        self._changed.set()
