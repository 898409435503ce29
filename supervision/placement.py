"""[cluster]: which live node each account is placed on (weighted rendezvous hashing).

Every node computes the same answer from the same node set, with no coordination: the node with
the highest score -weight / ln(u) for the account, u uniform in (0, 1) from a hash of (account,
node). A node's share of the accounts is its weight over the total; a node joining takes only
the accounts whose best score is now its own (about 1 / nodes of them), a node leaving moves only
its own. The live nodes are those that announced themselves (lease.py's nodes hash) within one
lease time, this node always among them; `Placement` reads them every `renew_s`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import trio

from .lease import REDIS_ERRORS, Leases

log = logging.getLogger("orderdesk.cluster")


def score(account: str, node: str, weight: float) -> float:
    """The (account, node) pair's rendezvous score, larger for a larger weight."""
    digest = hashlib.blake2b(f"{account}\0{node}".encode(), digest_size=8).digest()
    u = (int.from_bytes(digest, "big") + 1) / (2**64 + 1)  # in (0, 1), never 0 or 1
    return -weight / math.log(u)


def place(account: str, nodes: Mapping[str, float]) -> str | None:
    """The node (id -> weight) `account` is placed on; None when there is none."""
    return max(nodes, key=lambda node: (score(account, node, nodes[node]), node), default=None)


def live_nodes(announced: Mapping[str, Mapping[str, Any]], now: float,
               window_s: float) -> dict[str, float]:
    """The nodes (id -> weight) seen within `window_s` of `now` (wall clock) with a weight
    above 0; one announced without a weight weighs 1."""
    live = {}
    for node, seen in announced.items():
        try:
            weight = float(seen.get("weight", 1.0))
            fresh = now - float(seen.get("seen_at", 0.0)) <= window_s
        except (TypeError, ValueError):  # not written by a node: not one
            continue
        if fresh and weight > 0:
            live[node] = weight
    return live


class Placement:
    """This node's view of the live nodes; `here(account)` says whether to try to own it."""

    def __init__(self, leases: Leases) -> None:
        self._leases = leases
        self.node = leases.node
        #: The live nodes by weight; empty until the first read (then every account is tried
        #: here, as without placement).
        self.nodes: dict[str, float] = {}
        self._announced: dict[str, Mapping[str, Any]] = {}  # what each live node last said
        #: When (wall clock) each node last announced itself, as last read.
        self.seen: dict[str, float] = {}
        #: Set (and replaced) whenever the live node set changes.
        self.changed = trio.Event()
        #: Called when the live node set changes (the acquirer tries what is placed here now).
        self.on_change: Callable[[], None] = lambda: None

    def here(self, account: str) -> bool:
        return not self.nodes or place(account, self.nodes) == self.node

    def target(self, account: str) -> str | None:
        """Where `account` is placed (None: not known yet)."""
        return place(account, self.nodes)

    def successor(self, account: str) -> str | None:
        """Where `account` goes when this node leaves (None: no other live node)."""
        return place(account, {n: w for n, w in self.nodes.items() if n != self.node})

    def update(self, announced: Mapping[str, Mapping[str, Any]], now: float) -> bool:
        """Take a read of the nodes hash; True if the live node set changed. A node missing
        from it (Redis restarted empty) stays live until a lease time after it was last seen:
        placement does not change for the moment the nodes take to announce themselves again."""
        cluster = self._leases.cluster
        self._announced = {**self._announced, **announced}
        nodes = live_nodes(self._announced, now, cluster.lease_s)
        self._announced = {n: self._announced[n] for n in nodes}  # the dead are forgotten
        self.seen = {node: float(self._announced[node].get("seen_at", 0.0)) for node in nodes}
        nodes[self.node] = cluster.weight  # this node is live, announced yet or not
        if nodes == self.nodes:
            return False
        log.warning("live nodes: %s", ", ".join(f"{n} ({w:g})" for n, w in sorted(nodes.items())))
        self.nodes = nodes
        self.changed.set()
        self.changed = trio.Event()
        self.on_change()
        return True

    async def run(self) -> None:
        """Read the live nodes every `renew_s`, until cancelled."""
        while True:
            try:
                self.update(await self._leases.nodes(), time.time())
            except REDIS_ERRORS as exc:
                log.warning("cannot read the live nodes from Redis: %s", exc)
            await trio.sleep(self._leases.cluster.renew_s)
