"""[cluster]: websocket tickets and browser sessions kept in Redis, so that any node takes them.

A subscriber whose node stepped down reconnects to the new owner: its ticket (issued on one
node) must be redeemable once on another, its session cookie good on every node, and ending a
session anywhere must close its sockets everywhere. The books have the faces the web layer uses
(`web.auth.Tickets`, `web.sessions.Sessions`); without `[cluster]` the in-memory ones serve.

Keys, under the cluster's prefix, one hash slot each (no command here spans two keys, so Redis
Cluster works): `{<prefix>:ticket:<id>}` and `{<prefix>:session:<id>}` hold what the id stands
for, with the book's lifetime as their expiry (PX); a ticket is redeemed with GETDEL, atomic
across nodes, so it opens one socket only. `{<prefix>:who:<account>:<name>}:tickets` (and
`:sessions`) index an identity's live ids (a sorted set by expiry): they bound what one client
can make Redis hold (`max_per_identity`; past it the oldest goes first, as in memory) and let a
token rotation end everything it was given.

How another node's sockets learn that their session ended: each node checks, every `check_s`,
in one pipeline, that the sessions it holds sockets for still exist, and closes the sockets of
those that do not (4401 `SESSION_ENDED`): sign-out, rotation, eviction and expiry alike. Plainer
than pub/sub: nothing to miss while a connection to Redis is down (the next check sees the key
gone), no subscription to keep, one round trip per node per period whatever the number of
sessions; the cost is up to `check_s` of delay on the other nodes (the node that ends a session
closes its own sockets at once). Redis not answering: issuing, redeeming, signing in and out
answer 503 naming it (`ServiceUnavailable`); the checks fail quietly and sockets keep streaming.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import attrs
import coredis
import trio

from web.auth import Identity, Ticket
from web.errors import ServiceUnavailable
from web.sessions import Closable, Session, SessionSockets
from web.settings import ClusterSettings

from .lease import REDIS_ERRORS, redis_address

__all__ = ["BookLimits", "RedisSessions", "RedisTickets"]

log = logging.getLogger("orderdesk.cluster")

T = TypeVar("T")


@attrs.frozen
class BookLimits:
    """The books' lifetimes and caps, as the web front has them (`WebConfig`, `[server]`)."""

    ticket_ttl_s: float = 30.0
    session_ttl_s: float = 12 * 3600.0
    max_tickets: int = 10_000  # per identity
    max_sessions: int = 10_000  # per identity

#: Index the new id under an identity (a sorted set: id -> expiry, ms), dropping expired ids and,
#: past the cap, the oldest ones, whose ids it returns (their keys are then deleted).
_ADMIT = """
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
local over = redis.call('zcard', KEYS[1]) - tonumber(ARGV[4]) + 1
local evicted = {}
if over > 0 then
  evicted = redis.call('zrange', KEYS[1], 0, over - 1)
  redis.call('zremrangebyrank', KEYS[1], 0, over - 1)
end
redis.call('zadd', KEYS[1], ARGV[2], ARGV[3])
redis.call('pexpire', KEYS[1], ARGV[5])
return evicted
"""


#: Per key, whether it exists (KEYS may span slots: a single Redis only).
_EXIST = """
local found = {}
for i, key in ipairs(KEYS) do found[i] = redis.call('exists', key) end
return found
"""


class _RedisBook:
    """Random ids standing for a JSON value for `ttl_s`, indexed per identity."""

    def __init__(self, client: Any, cluster: ClusterSettings, kind: str, what: str,
                 ttl_s: float, max_per_identity: int, id_bytes: int) -> None:
        self._client = client
        self._prefix = cluster.key_prefix
        self._where = redis_address(cluster.redis_url)
        self._kind = kind
        self._what = what  # for the 503's message: "websocket tickets"
        self.ttl_s = ttl_s
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._max = max(1, max_per_identity)
        self._id_bytes = id_bytes
        self._admit = client.register_script(_ADMIT)
        self._exist = client.register_script(_EXIST)

    def key(self, entry_id: str) -> str:
        return f"{{{self._prefix}:{self._kind}:{entry_id}}}"

    def index(self, identity: Identity) -> str:
        return f"{{{self._prefix}:who:{identity.account or '*'}:{identity.name}}}:{self._kind}s"

    async def answer(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call`'s result; `ServiceUnavailable` (503) naming Redis when it does not answer."""
        try:
            return await call()
        except* REDIS_ERRORS as group:  # the client's own task group may wrap it
            exc = group.exceptions[0]
            log.warning("%s: Redis at %s does not answer: %s", self._what, self._where, exc)
            raise ServiceUnavailable(
                f"{self._what} are kept in Redis ({self._where}), which does not answer "
                f"({type(exc).__name__}: {exc}); try again shortly") from None

    async def add(self, identity: Identity, value: dict[str, Any]) -> str:
        entry_id = secrets.token_urlsafe(self._id_bytes)

        async def add() -> None:
            now_ms = int(time.time() * 1000)
            evicted = await self._admit(keys=[self.index(identity)], args=[
                now_ms, now_ms + self._ttl_ms, entry_id, self._max, self._ttl_ms])
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.set(self.key(entry_id), json.dumps(value), px=self._ttl_ms)
                for old in evicted:
                    pipe.delete([self.key(str(old))])

        await self.answer(add)
        return entry_id

    async def get(self, entry_id: str) -> dict[str, Any] | None:
        return _loaded(await self.answer(lambda: self._client.get(self.key(entry_id))))

    async def take(self, entry_id: str) -> dict[str, Any] | None:
        """The id's value, taken out: of two nodes taking one id, one gets it."""
        return _loaded(await self.answer(lambda: self._client.getdel(self.key(entry_id))))

    async def forget(self, identity: Identity, entry_id: str) -> None:
        await self.answer(lambda: self._client.zrem(self.index(identity), [entry_id]))

    async def drop_all(self, identity: Identity) -> list[str]:
        """Take out every live id of `identity`; those that were still live."""
        async def drop() -> list[str]:
            index = self.index(identity)
            ids = [str(i) for i in await self._client.zrange(index, 0, -1)]
            async with self._client.pipeline(transaction=False) as pipe:
                for entry_id in ids:
                    pipe.delete([self.key(entry_id)])
                pipe.delete([index])
            deleted = (pipe.results or ())[:len(ids)]
            return [i for i, n in zip(ids, deleted, strict=True) if n]

        return await self.answer(drop)

    async def live(self, ids: Sequence[str]) -> list[bool]:
        """Whether each id is still live, in one round trip (raises a `REDIS_ERRORS` one). One
        script over every key on a single Redis (1000 keys: 11 ms against 88 ms as a pipeline
        of EXISTS, mostly the client's own work per command); under Redis Cluster, whose
        scripts take one slot's keys only, that pipeline."""
        keys = [self.key(entry_id) for entry_id in ids]
        if not isinstance(self._client, coredis.RedisCluster):
            return [bool(n) for n in await self._exist(keys=keys, args=[])]
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.exists([key])
        return [bool(n) for n in (pipe.results or ())]


def _loaded(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:  # not written by a node: not one of ours
        return None
    return value if isinstance(value, dict) else None


def _identity(value: dict[str, Any]) -> Identity | None:
    """The identity a value names; None for one not written by a node (not ours)."""
    name, account = value.get("name"), value.get("account")
    if not isinstance(name, str) or not isinstance(account, str | None):
        return None
    return Identity(name, account)


class RedisTickets:
    """Single-use websocket tickets every node of the cluster redeems (`web.auth.Tickets`)."""

    def __init__(self, client: Any, cluster: ClusterSettings, ttl_s: float,
                 max_per_identity: int) -> None:
        self._book = _RedisBook(client, cluster, "ticket", "websocket tickets", ttl_s,
                                max_per_identity, id_bytes=24)

    @property
    def ttl_s(self) -> float:
        return self._book.ttl_s

    async def issue(self, identity: Identity, account: str, session: str | None = None) -> str:
        return await self._book.add(identity, {"name": identity.name,
                                               "account": identity.account,
                                               "for": account, "session": session})

    async def redeem(self, ticket: str) -> Ticket | None:
        """What the ticket stands for, once across the cluster; None if unknown, used or
        expired."""
        value = await self._book.take(ticket)
        identity = None if value is None else _identity(value)
        if value is None or identity is None or not isinstance(value.get("for"), str):
            return None
        session = value.get("session")
        return Ticket(identity, value["for"], session if isinstance(session, str) else None)

    async def drop_for(self, identity: Identity) -> None:
        """A rotated token: the tickets issued to it are void on every node."""
        await self._book.drop_all(identity)


class RedisSessions:
    """Browser sessions every node of the cluster takes (`web.sessions.Sessions`); the sockets
    each opened on this node, closed when the session ends anywhere (`watch`)."""

    def __init__(self, client: Any, cluster: ClusterSettings, ttl_s: float,
                 max_per_identity: int) -> None:
        self._book = _RedisBook(client, cluster, "session", "browser sessions", ttl_s,
                                max_per_identity, id_bytes=32)
        self._sockets = SessionSockets()
        self.check_s = cluster.session_check_s
        self.checks = 0  # rounds that asked Redis
        self.failed_checks = 0  # of those, the ones Redis did not answer
        self._failing = False  # the last check failed (logged once per outage)

    @property
    def ttl_s(self) -> float:
        return self._book.ttl_s

    async def open(self, identity: Identity) -> Session:
        session_id = await self._book.add(identity, {"name": identity.name,
                                                     "account": identity.account})
        return Session(session_id, identity)

    async def get(self, session_id: str) -> Session | None:
        """The live session of that id; None when unknown, ended or expired."""
        value = await self._book.get(session_id)
        identity = None if value is None else _identity(value)
        return None if identity is None else Session(session_id, identity)

    def attach(self, session_id: str, socket: Closable) -> bool:
        """Track a socket the session opened (checked live by the caller; if it ended since,
        the next check closes it)."""
        self._sockets.attach(session_id, socket)
        return True

    def detach(self, session_id: str, socket: Closable) -> None:
        self._sockets.detach(session_id, socket)

    async def end(self, session_id: str) -> None:
        """Sign-out: the session is gone everywhere; its sockets here close now, those on
        other nodes at their next check."""
        value = await self._book.take(session_id)
        self._sockets.close(session_id)
        identity = None if value is None else _identity(value)
        if identity is not None:
            await self._book.forget(identity, session_id)

    async def end_for(self, identity: Identity) -> int:
        """A rotated token: every session opened with it ends, on every node. How many did."""
        ended = await self._book.drop_all(identity)
        for session_id in ended:
            self._sockets.close(session_id)
        return len(ended)

    async def watch(self) -> None:
        """Until cancelled: every `check_s`, close the sockets here of sessions that ended."""
        while True:
            await trio.sleep(self.check_s)
            await self.check()

    async def check(self) -> None:
        """One check of the sessions with sockets here; Redis not answering leaves them be."""
        ids = self._sockets.sessions()
        if not ids:
            return
        self.checks += 1
        live: list[bool] | None = None
        try:
            live = await self._book.live(ids)
        except* REDIS_ERRORS as group:  # the client's own task group may wrap it
            self.failed_checks += 1
            if not self._failing:
                log.warning("cannot check %d browser sessions in Redis (their sockets stay "
                            "open until it answers): %s", len(ids), group.exceptions[0])
            self._failing = True
        if live is None:
            return
        if self._failing:
            log.info("browser sessions checked in Redis again")
        self._failing = False
        for session_id, alive in zip(ids, live, strict=True):
            if not alive:
                self._sockets.close(session_id)
