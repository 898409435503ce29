"""[cluster]: which node owns an account now, and where it serves: for forwarding a request.

The owner is the holder of the account's Redis lease. It is remembered between requests (no
Redis round trip per forward): a node that no longer owns the account refuses a forwarded
request before doing anything, and an owner gone refuses the connection, and then the forwarder
asks again (`fresh`). Its address is what it announced in the nodes hash, which changes only
when a node starts, so it is kept here too and read again when a holder is not in it yet (a
node that just started) or every `refresh_s`.
This node is never the answer: holding the lease without owning the account yet is a takeover
under way here, which the caller refuses (503), never forwards to itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from web import Owner

from .lease import REDIS_ERRORS, Leases

log = logging.getLogger("orderdesk.cluster")


class OwnerFinder:
    """What `web.Forwarder` asks (its `OwnerLookup`), from the leases of this node's Redis."""

    def __init__(self, leases: Leases, owns: Callable[[str], bool],
                 refresh_s: float = 30.0) -> None:
        self._leases = leases
        self._owns = owns
        self._refresh_s = refresh_s
        self._addresses: dict[str, str] = {}
        self._owners: dict[str, Owner] = {}  # by account, as last found
        self._read_at = float("-inf")

    def local(self, account: str) -> bool:
        return self._owns(account)

    async def find(self, account: str, *, fresh: bool = False) -> Owner | None:
        """The node that owns `account` (not this one) and its address, as last found unless
        `fresh`; None when nobody holds it, this node does, or Redis does not answer."""
        known = self._owners.get(account)
        if known is not None and not fresh:
            return known
        self._owners.pop(account, None)
        try:
            holder, _ = await self._leases.holder(account)
            if holder is None or holder == self._leases.node:
                return None
            address = await self._address(holder)
        except REDIS_ERRORS as exc:
            log.warning("cannot find the owner of account %s: Redis: %s", account, exc)
            return None
        if address is None:
            return None
        owner = self._owners[account] = Owner(holder, address)
        return owner

    async def still_holds(self, account: str, node: str) -> bool:
        """Whether `node` still holds `account`'s lease (not knowing, Redis down: yes)."""
        try:
            holder, _ = await self._leases.holder(account)
        except REDIS_ERRORS:
            return True
        return holder == node

    async def _address(self, node: str) -> str | None:
        now = trio.current_time()
        if node not in self._addresses or now - self._read_at > self._refresh_s:
            nodes = await self._leases.nodes()
            self._addresses = {name: str(seen["advertised"]) for name, seen in nodes.items()
                               if seen.get("advertised")}
            self._read_at = now
        return self._addresses.get(node)
