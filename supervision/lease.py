"""[cluster]: the Redis lease that says which node may own an account's actor.

One key per account, `{<prefix>:acct:<id>}:lease` (the braces are a hash tag: each account's keys
share one slot, so Redis Cluster works), holding the owner's node id with an expiry. It is taken
with SET NX PX, renewed by a script that extends it only for its holder, and released by a script
that deletes it only for its holder: a node can never extend or drop another node's lease.

The holder's own view of its lease is a monotonic deadline measured from when the renewal was
SENT (the reply may come late; Redis started counting no earlier), minus a margin for clock rate
differences: past it, the node stops acting as the owner even if Redis has not expired the key
yet. A node renews all its leases in one round (`renew_all`, driven by `renewal.Renewer`) and
tries every lease it waits for in one round too (`acquire_all`, driven by
`acquisition.Acquirer`): one pipeline of a script, one call per key, so each key keeps its own
hash slot.
The lease alone is not the fence (Redis may lose an acknowledged write on failover): Postgres'
epoch is (`store` `claim_account`).

Nodes announce themselves in the hash `{<prefix>:nodes}` (node id -> address, when last seen,
whether it forwards requests with the cluster's secret), for `orderdesk cluster` and for the
nodes that forward requests to an account's owner (owner_finder.py).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import coredis
import trio
from coredis.exceptions import NoScriptError, RedisError

from web.settings import ClusterSettings

__all__ = ["Lease", "Leases", "RedisError", "Try", "open_leases", "redis_address"]

#: Per key: the lease taken if it was free, {1}; else who holds it (a key that is not a lease:
#: '') and its ttl in ms, {0, holder, pttl}. Any number of keys (one call per slot in Cluster).
_ACQUIRE = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('set', key, ARGV[1], 'NX', 'PX', ARGV[2]) then
    out[i] = {1}
  else
    local held = redis.pcall('get', key)
    if held == 'handoff:' .. ARGV[1] then
      redis.call('set', key, ARGV[1], 'PX', ARGV[2])
      out[i] = {1}
    else
      if type(held) ~= 'string' then held = '' end
      out[i] = {0, held, redis.call('pttl', key)}
    end
  end
end
return out
"""
#: Per key: 1 extended (this node still holds it), 0 not (another node's, or none), -1 not
#: known (not a lease: an error for that key alone).
_RENEW = """
local out = {}
for i, key in ipairs(KEYS) do
  local held = redis.pcall('get', key)
  if type(held) == 'table' and held.err then
    out[i] = -1
  elseif held == ARGV[1] then
    out[i] = redis.call('pexpire', key, ARGV[2])
  else
    out[i] = 0
  end
end
return out
"""
#: Give the lease up only if this node holds it: deleted, or (ARGV[2] a node) kept for that
#: node alone for ARGV[3] ms (a handoff: only its acquisition takes `handoff:<node>`).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  if ARGV[2] ~= '' then
    return redis.call('set', KEYS[1], 'handoff:' .. ARGV[2], 'PX', ARGV[3]) and 1 or 0
  end
  return redis.call('del', KEYS[1])
end
return 0
"""
#: The lease value of an account handed off to a node, before that node takes it.
HANDOFF = "handoff:"
#: Redis errors and a socket that failed under them: the lease cannot be read or renewed now.
REDIS_ERRORS = (RedisError, OSError)


def redis_address(url: str) -> str:
    """The Redis URL without its password, for messages."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


@attrs.define(eq=False)
class Lease:
    """This node's hold on one account; `deadline` (trio clock) moves on at each renewal."""

    account: str
    key: str
    deadline: float
    acquired_at: float  # wall clock, for operators
    renewed_at: float  # trio clock of the last renewal sent (or the acquisition)
    #: Set when a renewal finds another node holding the key (or none): the holder must stop.
    lost: trio.Event = attrs.field(factory=trio.Event)
    released: bool = False  # given up: a renewal answered late no longer moves the deadline
    #: The node this lease is handed off to when given up (None: released to any node).
    handoff_to: str | None = None
    #: Given up by letting it expire, not released (a broker call may still be in flight).
    expire: bool = False

    def remaining(self) -> float:
        """Seconds this node may still act as the owner (<= 0: it must have stopped; 0 once
        a renewal found the key lost)."""
        return 0.0 if self.lost.is_set() else self.deadline - trio.current_time()


@attrs.frozen
class Try:
    """One account's part of an acquisition round: the lease taken, or who holds it and for
    how much longer (None: not known, e.g. the key expired between the two reads)."""

    account: str
    lease: Lease | None
    holder: str | None = None
    expires_in_s: float | None = None


class Leases:
    """The leases of one node on one Redis."""

    def __init__(self, client: Any, cluster: ClusterSettings) -> None:
        self._client = client
        self.cluster = cluster
        self.node = cluster.node_id
        self._ttl_ms = max(1, int(cluster.lease_s * 1000))
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        #: Where an account released without a handoff goes (placement.py: where it is placed
        #: without this node), so a node stopping hands its accounts over; None: to any node.
        self.successor: Callable[[str], str | None] = lambda account: None
        #: Redis round trips by kind (renew_round: one `renew_all`, whatever its size).
        self.calls: Counter[str] = Counter()

    @property
    def client(self) -> Any:
        """The node's Redis client, which the shared books (shared_books.py) use too."""
        return self._client

    def key(self, account: str) -> str:
        return f"{{{self.cluster.key_prefix}:acct:{account}}}:lease"

    @property
    def nodes_key(self) -> str:
        return f"{{{self.cluster.key_prefix}:nodes}}"

    @property
    def handoffs_key(self) -> str:
        """The hash of the handoffs in progress (handoff.py), for `orderdesk cluster`."""
        return f"{{{self.cluster.key_prefix}:handoffs}}"

    def _valid_until(self, sent: float) -> float:
        return sent + self.cluster.lease_s - self.cluster.margin_s

    async def acquire(self, account: str) -> Lease | None:
        """Take the lease if it is free; None while it is held, even under this node's id (a
        node restarted within its lease waits for it to expire: two processes given one node
        id never both own). Raises a `REDIS_ERRORS` one."""
        key = self.key(account)
        sent = trio.current_time()
        self.calls["acquire"] += 1
        if not await self._client.set(key, self.node, condition=coredis.PureToken.NX,
                                      px=self._ttl_ms):
            return None
        return Lease(account, key, self._valid_until(sent), time.time(), sent)

    async def acquire_all(self, accounts: Sequence[str]) -> list[Try]:
        """Try every account's lease in one Redis round (SET NX as `acquire` does, one script
        call per key); a taken lease's deadline counts from when the round was sent. A key
        whose try fails alone is not taken (nor its holder known). Raises a `REDIS_ERRORS` one
        when the round fails as a whole (a key taken in it then expires untouched)."""
        if not accounts:
            return []
        keys = [self.key(account) for account in accounts]
        sent = trio.current_time()
        self.calls["acquire_round"] += 1
        replies = await self._scripted(self._acquire, keys, [self.node, self._ttl_ms])
        if any(isinstance(r, NoScriptError) for r in replies):  # Redis restarted: load it
            self._acquire.sha = await self._client.script_load(_ACQUIRE)
            sent = trio.current_time()
            self.calls["acquire_round"] += 1
            replies = await self._scripted(self._acquire, keys,
                                           [self.node, self._ttl_ms])
        now = time.time()
        tries = []
        for account, key, reply in zip(accounts, keys, replies, strict=True):
            if isinstance(reply, BaseException):  # that key alone: not taken, holder not known
                tries.append(Try(account, None))
            elif int(reply[0]) == 1:
                tries.append(Try(account, Lease(account, key, self._valid_until(sent), now,
                                                sent)))
            else:
                holder, ttl_ms = str(reply[1]), int(reply[2])
                tries.append(Try(account, None, holder or None,
                                 ttl_ms / 1000 if holder and ttl_ms >= 0 else None))
        return tries

    async def renew(self, lease: Lease) -> bool:
        """Extend `lease`; False if this node no longer holds it (expired, taken by another)."""
        sent = trio.current_time()
        self.calls["renew"] += 1
        if await self._renew(keys=[lease.key], args=[self.node, self._ttl_ms]) != [1]:
            return False
        self._renewed(lease, sent)
        return True

    async def renew_all(self, leases: Sequence[Lease]) -> list[bool | None]:
        """Extend every lease in one Redis round; per lease: True renewed (its deadline counts
        from when the round was sent), False lost (`lease.lost` set), None not known (an error
        for that key alone: the deadline stays). Raises a `REDIS_ERRORS` one when the round
        itself fails (no lease moves on)."""
        if not leases:
            return []
        sent = trio.current_time()
        self.calls["renew_round"] += 1
        keys = [lease.key for lease in leases]
        replies = await self._scripted(self._renew, keys, [self.node, self._ttl_ms])
        if any(isinstance(r, NoScriptError) for r in replies):  # Redis restarted: load it
            self._renew.sha = await self._client.script_load(_RENEW)
            sent = trio.current_time()
            self.calls["renew_round"] += 1
            replies = await self._scripted(self._renew, keys, [self.node, self._ttl_ms])
        results: list[bool | None] = []
        for lease, reply in zip(leases, replies, strict=True):
            if isinstance(reply, BaseException) or reply == -1:
                results.append(None)
            elif reply == 1:
                self._renewed(lease, sent)
                results.append(True)
            else:
                lease.lost.set()
                results.append(False)
        return results

    async def _scripted(self, script: Any, keys: Sequence[str], args: list[Any]) -> list[Any]:
        """`script` over `keys` with the same `args`: its reply per key, or the error of the
        call that carried the key. One call for every key (one round trip, one command to
        build and parse), except on Redis Cluster, where each key may live on another node:
        one call per key there, sent as one pipeline (not a transaction: coredis sends each to
        its slot's node). EVALSHA, not the Script object, which would first ask SCRIPT EXISTS:
        a second round trip."""
        if not isinstance(self._client, coredis.RedisCluster):
            try:
                return list(await self._client.evalsha(script.sha, keys=keys, args=args))
            except NoScriptError as exc:
                return [exc] * len(keys)
        async with self._client.pipeline(transaction=False, raise_on_error=False) as pipe:
            for key in keys:
                pipe.evalsha(script.sha, keys=[key], args=args)
        return [r if isinstance(r, BaseException) else r[0] for r in pipe.results or ()]

    def _renewed(self, lease: Lease, sent: float) -> None:
        if not lease.released:
            lease.deadline = max(lease.deadline, self._valid_until(sent))
            lease.renewed_at = sent

    async def release(self, lease: Lease) -> None:
        """Give the lease up now, if still held, so another node need not wait for it."""
        lease.released = True
        lease.deadline = min(lease.deadline, trio.current_time())
        self.calls["release"] += 1
        to = lease.handoff_to or self.successor(lease.account) or ""
        await self._release(keys=[lease.key], args=[self.node, to, self._ttl_ms])

    async def give_up(self, lease: Lease) -> None:
        """`release` (unless it is to `expire`), bounded to a second and quiet on Redis
        errors: a lease not released expires on its own."""
        if lease.expire:
            lease.released = True
            return
        with trio.move_on_after(1.0):
            try:
                await self.release(lease)
            except REDIS_ERRORS:
                pass

    async def holder(self, account: str) -> tuple[str | None, float | None]:
        """Who holds `account`'s lease and for how many more seconds (None, None: nobody)."""
        key = self.key(account)
        self.calls["holder"] += 1
        async with self._client.pipeline(transaction=False) as pipe:  # one round trip
            pipe.get(key)
            pipe.pttl(key)
        node, ttl_ms = pipe.results or (None, -2)
        if node is None or ttl_ms < 0:
            return None, None
        return str(node), ttl_ms / 1000

    async def announce(self) -> None:
        """Say this node is alive (and where it serves) in the nodes hash."""
        seen = {"advertised": self.cluster.advertised, "seen_at": time.time(),
                "lease_s": self.cluster.lease_s, "forwards": bool(self.cluster.secret),
                "weight": self.cluster.weight}
        await self._client.hset(self.nodes_key, {self.node: json.dumps(seen)})

    async def retire(self) -> None:
        """Leave the nodes hash (a graceful stop): the others place nothing more here."""
        await self._client.hdel(self.nodes_key, [self.node])

    async def nodes(self) -> dict[str, dict[str, Any]]:
        """Every node that ever announced itself: its address and when it was last seen."""
        found = await self._client.hgetall(self.nodes_key)
        nodes = {}
        for node, value in found.items():
            try:
                nodes[str(node)] = dict(json.loads(value))
            except (ValueError, TypeError):  # not written by a node: not one
                continue
        return nodes


@asynccontextmanager
async def open_leases(cluster: ClusterSettings) -> AsyncIterator[Leases]:
    """A Redis client for `cluster`; connecting is lazy, so a Redis that is down at start
    makes the calls fail (and the ownership loops wait), not the start."""
    timeout = max(0.05, min(1.0, cluster.renew_s))
    client = coredis.Redis.from_url(cluster.redis_url, decode_responses=True,
                                    connect_timeout=timeout, stream_timeout=timeout)
    async with client:
        yield Leases(client, cluster)
