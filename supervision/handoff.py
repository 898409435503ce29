"""[cluster]: an account this node owns but is placed on another node is handed to that node.

When the live nodes change (placement.py), each owned account now placed elsewhere is handed
off, at most `handoffs_per_s` a second (a node joining does not move everything at once): the
node stops taking new work for it (`Cluster.owns` says no: new requests get the 503 to retry;
a batch needing a rollback leaves it to the next owner's recovery), waits for its takeover (if
that is recent), running batches and orders to end (at most `drain_s`), then the owner steps
down (its subscribers closed to reconnect with `since`, as at any step-down) and gives the lease
to the placed node alone (`Lease.handoff_to`): that node takes it at its next round, with a new
epoch, without waiting for the lease to expire. Not drained in time, the lease is left to
expire instead (a broker call may still be in flight: the next owner must not start before
that call's timeout), and the next owner recovers what is left, as after a takeover.
A handoff in progress is listed in the hash
`{<prefix>:handoffs}` for `orderdesk cluster`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import trio

from .lease import REDIS_ERRORS, Leases
from .ownership import AccountOwner
from .placement import Placement

log = logging.getLogger("orderdesk.cluster")

class OrderPath(Protocol):
    """What a handoff needs of the order path (the batch coordinator)."""

    def unfinished(self, account: str) -> int: ...  # its batches, orders, takeover running
    async def statistics_until(self, check: Callable[[Any], bool]) -> Any: ...  # on changes


class Handoffs:
    """This node's handoffs (`run`), and the accounts it refuses new work for meanwhile."""

    def __init__(self, leases: Leases, placement: Placement,
                 owners: Mapping[str, AccountOwner],
                 orders: Callable[[], OrderPath | None] = lambda: None) -> None:
        self._leases = leases
        self._placement = placement
        self._owners = owners
        self._orders = orders
        self.in_progress: dict[str, str] = {}  # account -> the node it goes to
        self.started = 0
        self.done = 0
        self.drain_timeouts = 0  # handoffs that stepped down with batches still running

    def statistics(self) -> dict[str, int]:
        return {"handoffs_in_progress": len(self.in_progress), "handoffs_started": self.started,
                "handoffs_done": self.done, "handoff_drain_timeouts": self.drain_timeouts}

    def due(self) -> list[tuple[str, str]]:
        """(account, node) for each account owned here, placed on another live node that has
        announced itself since this node took the account (not the node it was just taken
        from, silent since), and not being handed off yet."""
        due = []
        for account, owner in self._owners.items():
            target, lease = self._placement.target(account), owner.lease
            if (owner.state == "owner" and lease is not None and target is not None
                    and target != self._leases.node and account not in self.in_progress
                    and self._placement.seen.get(target, 0.0) > lease.acquired_at):
                due.append((account, target))
        return due

    async def run(self) -> None:
        """Hand off what is due whenever the placement changes (and every `renew_s`: an
        account taken since), paced, until cancelled."""
        cluster = self._leases.cluster
        gap_s = 1.0 / cluster.handoffs_per_s
        next_at = trio.current_time()
        async with trio.open_nursery() as nursery:
            while True:
                for account, target in self.due():
                    await trio.sleep_until(next_at)
                    if self._placement.target(account) != target:  # it changed meanwhile
                        continue
                    next_at = max(trio.current_time(), next_at) + gap_s
                    self.in_progress[account] = target
                    nursery.start_soon(self._hand_off, account, target)
                with trio.move_on_after(cluster.renew_s):
                    await self._placement.changed.wait()

    async def _hand_off(self, account: str, target: str) -> None:
        owner = self._owners[account]
        self.started += 1
        log.warning("account %s: handing off to %s", account, target)
        await self._listed(account, {"from": self._leases.node, "to": target,
                                     "since": time.time()})
        try:
            drained = await self._drained(account)
            lease = owner.lease
            if owner.state == "owner" and lease is not None:
                lease.handoff_to = target
                lease.expire = not drained
                lease.lost.set()  # the owner steps down, and releases the lease to `target`
                await owner.stepped_down.wait()
                self.done += 1
        finally:
            self.in_progress.pop(account, None)
            with trio.CancelScope(shield=True):
                await self._listed(account, None)

    async def _drained(self, account: str) -> bool:
        """Wait (at most `drain_s`) until nothing of `account` runs here; False if in vain."""
        orders = self._orders()
        if orders is None:
            return True
        with trio.move_on_after(self._leases.cluster.drain_s):
            while orders.unfinished(account):
                with trio.move_on_after(self._leases.cluster.renew_s):  # a takeover ending
                    await orders.statistics_until(lambda _: not orders.unfinished(account))
            return True
        self.drain_timeouts += 1
        return False

    async def _listed(self, account: str, row: dict[str, Any] | None) -> None:
        """List (or, None, unlist) the handoff of `account` for `orderdesk cluster`."""
        key = self._leases.handoffs_key
        with trio.move_on_after(1.0):
            try:
                if row is None:
                    await self._leases.client.hdel(key, [account])
                else:
                    await self._leases.client.hset(key, {account: json.dumps(row)})
            except REDIS_ERRORS as exc:
                log.warning("cannot list the handoff of account %s: %s", account, exc)
