"""[cluster]: this node's part in a cluster, for the supervision tree.

`open_cluster` (nothing without `[cluster]`) turns fencing on in the store, opens the Redis
client, announces the node every `renew_s`, runs the node's `Renewer` (every lease the node
holds, renewed in one Redis round) and `Acquirer` (every lease it waits for, tried in one
round, the epochs of those taken claimed together) and hands out one `AccountOwner` per
account: the
tree runs it in place of the actor's own `run`, so an actor runs only where its account is
owned (and appends its updates to its stream). This node's subscribers of accounts it does
not own are fed from those streams (`StreamFeeds`, its reader runs here; `Cluster.subscribe`
is what the web front calls). `Cluster.fence` is the order path's check before each broker
write (the lease must outlast the call). With the cluster's secret, requests for accounts
another node owns are forwarded to it (`Cluster.forwarder`, web/forward.py; the owner found by
`OwnerFinder`). Accounts are placed over the live nodes (`Placement`): the acquirer tries
first those placed here, and `Handoffs` hands those placed elsewhere to their node. It outlives
the accounts subtree (a stepping-down owner still releases its lease).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import coredis
import trio

from actors.account import AccountActor, ActorConfig, Subscription
from actors.health import HealthEntry
from actors.orders import LeaseExpiring
from store import AccountState
from web import Authenticator, Forwarder, open_forwarder
from web.settings import ClusterSettings

from .acquisition import Acquirer
from .handoff import Handoffs
from .lease import REDIS_ERRORS, Leases, open_leases
from .owner_finder import OwnerFinder
from .ownership import AccountOwner, Claims, Takeovers
from .placement import Placement
from .renewal import Renewer
from .rotations import follow_rotations
from .shared_books import BookLimits, RedisSessions, RedisTickets
from .stream_append import StreamAppender
from .stream_feeds import StreamFeeds
from .takeover_gc import CollectorHold
from .tokens import TokenVault
from .xread_connection import XReadConnection

log = logging.getLogger("orderdesk.cluster")

class Cluster:
    """This node's owners, by account."""

    def __init__(self, leases: Leases, store: Claims, tokens: TokenVault | None = None,
                 books: BookLimits = BookLimits(), feeds: StreamFeeds | None = None,
                 stream_cap: int = ActorConfig().replay_buffer) -> None:
        self.leases = leases
        #: This node's subscribers of accounts it does not own, fed from their streams.
        self.feeds = feeds
        self._stream_cap = stream_cap  # entries each account's stream keeps (its replay size)
        #: Websocket tickets and browser sessions every node takes (Redis).
        self.tickets = RedisTickets(leases.client, leases.cluster, books.ticket_ttl_s,
                                    books.max_tickets)
        self.sessions = RedisSessions(leases.client, leases.cluster, books.session_ttl_s,
                                      books.max_sessions)
        #: Renews the leases of every account this node owns, in one round each `renew_s`.
        self.renewer = Renewer(leases)
        #: Keeps the cyclic garbage collector off while accounts taken over start.
        self.collector = CollectorHold()
        #: Which live node each account is placed on.
        self.placement = Placement(leases)
        #: Takes the leases (and claims the epochs) of the accounts this node waits for, in
        #: rounds: first those placed here.
        self.acquirer = Acquirer(leases, self.renewer, store, self._load_actors, self.collector,
                                 placed_here=self.placement.here,
                                 grace_s=leases.cluster.lease_s, held_back=self._held_back)
        self.placement.on_change = self.acquirer.replaced
        leases.successor = self.placement.successor  # a node stopping hands its accounts over
        self._actors: dict[str, AccountActor] = {}
        self._store = store
        #: The access tokens kept sealed in the store for every node.
        self.tokens = tokens
        self.owners: dict[str, AccountOwner] = {}
        #: Per account, what the appenders of its earlier ownership periods here counted.
        self._past_streams: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.handoffs = Handoffs(leases, self.placement, self.owners,
                                 lambda: self.takeovers)  # type: ignore[arg-type,return-value]
        #: The order path, once built: each takeover recovers the old owner's batches through it.
        self.takeovers: Takeovers | None = None
        #: Sends requests for accounts other nodes own to them (None: no shared secret).
        self.forwarder: Forwarder | None = None

    def owner(self, actor: AccountActor, health: HealthEntry | None = None) -> AccountOwner:
        """The ownership loop that runs `actor` whenever this node owns its account (`health`:
        the actor's entry, whose upstream is not judged while the account is standby here)."""
        owner = AccountOwner(actor, self.acquirer, self.renewer, self._store, health,
                             lambda: self.takeovers, self.tokens, self._appender,
                             warm=self.leases.cluster.warm_standby)
        self.owners[actor.account] = owner
        self._actors[actor.account] = actor
        return owner

    def _held_back(self, account: str) -> bool:
        """Whether a batch or order of `account` still runs here from an earlier ownership
        (it would go on under the new lease and epoch): the account is not taken meanwhile."""
        orders = self.takeovers
        return orders is not None and not self.owns(account) and bool(
            orders.unfinished(account))  # type: ignore[attr-defined]

    def _appender(self, account: str) -> StreamAppender:
        """The appender of `account`'s next ownership period; the last one's counts are kept
        (the metrics are counters: an account handed off and back must not reset them)."""
        last = self.owners[account].appender
        if last is not None:
            self._past_streams[account].update(_appender_counts(last))
        return StreamAppender(self.leases.client, self.leases.cluster.key_prefix, account,
                              self._store, self._stream_cap)  # type: ignore[arg-type]

    def local(self, account: str) -> bool:
        """Whether a subscriber of `account` is served by the actor here (this node owns it),
        not from the account's stream (`feeds`)."""
        return self.owns(account)

    async def subscribe(self, account: str, since: int | None) -> Subscription:
        """A subscriber of `account` (not owned here) fed from its stream (`StreamFeeds`)."""
        assert self.feeds is not None
        return await self.feeds.subscribe(account, since)

    def unsubscribe(self, sub: Subscription) -> None:
        if self.feeds is not None:
            self.feeds.unsubscribe(sub)

    async def _load_actors(self, accounts: list[str]) -> dict[str, AccountState]:
        """What the actors of `accounts` (taken in one round) start from, in one read."""
        recent = max(self._actors[account].replay_size for account in accounts)
        return await self._store.load_accounts(accounts, recent)

    def owns(self, account: str) -> bool:
        """Whether this node owns `account` now (the order path acts only for those), and is
        not handing it off."""
        owner = self.owners.get(account)
        return (owner is not None and owner.state == "owner"
                and account not in self.handoffs.in_progress)

    def fence(self, account: str, call_s: float) -> None:
        """The order path's `BrokerFence`: LeaseExpiring unless this node owns `account` and
        its lease outlasts a call of `call_s` seconds started now."""
        owner = self.owners.get(account)
        lease = owner.lease if owner is not None and owner.state == "owner" else None
        if owner is None or lease is None:
            if owner is not None:
                owner.calls_fenced += 1
            raise LeaseExpiring(f"not sent: this node does not own account {account!r}")
        left = lease.remaining()
        if left < call_s:
            owner.calls_fenced += 1
            raise LeaseExpiring(
                f"not sent: this node's lease on account {account!r} ends in {left:.2f} s, "
                f"before the call's {call_s:g} s timeout would")

    def web_deps(self) -> dict[str, Any]:
        """What the web front takes of the cluster (`WebDeps` fields): the ownership view and
        counters, the shared access tokens, tickets and sessions, the forwarder to owners."""
        return {"ownership": self.view, "cluster_counters": self.counters, "tokens": self.tokens,
                "tickets": self.tickets, "sessions": self.sessions, "remote": self,
                "forwarder": self.forwarder}

    def view(self) -> dict[str, dict[str, Any]]:
        """Per account: this node, its state there (owner or standby), epoch, lease left."""
        return {account: owner.view() for account, owner in self.owners.items()}

    def counters(self) -> dict[str, Any]:
        """What `/metrics` shows of this node's ownership: per account whether it owns it and
        its takeovers, step-downs, broker calls fenced and store writes refused by epoch, its
        stream's appends (seqs appended, failed calls, gaps filled, lag) and the updates its
        stream delivered to this node's subscribers; the renewal rounds of the node."""
        renewals = self.renewer.statistics()
        feeds = {} if self.feeds is None else self.feeds.statistics()
        return {
            "accounts": {
                account: {"owner": owner.state == "owner", "takeovers": owner.takeovers,
                          "step_downs": owner.step_downs, "calls_fenced": owner.calls_fenced,
                          "fenced_out": owner.fenced_out + self._store.refused_writes(account),
                          **_stream_counters(owner.appender, feeds.get(account),
                                             self._past_streams[account])}
                for account, owner in self.owners.items()
            },
            "renewal_rounds": renewals["rounds"],
            "renewal_failed_rounds": renewals["failed_rounds"],
            **self.handoffs.statistics(),
        }

    async def announce(self) -> None:
        """Keep this node listed as alive (`orderdesk cluster`), until cancelled."""
        while True:
            try:
                await self.leases.announce()
            except REDIS_ERRORS as exc:
                log.warning("cannot announce this node to Redis: %s", exc)
            await trio.sleep(self.leases.cluster.renew_s)


#: What an account's appender counts, as `counters` names it.
_APPENDER_COUNTS = ("stream_appends", "stream_append_errors", "stream_fills")


def _appender_counts(appender: StreamAppender) -> dict[str, int]:
    return dict(zip(_APPENDER_COUNTS, (appender.appends, appender.errors, appender.fills),
                    strict=True))


def _stream_counters(appender: StreamAppender | None, feed: dict[str, int] | None,
                     past: Counter[str]) -> dict[str, float]:
    """An account's stream, as `counters` shows it: appended here (`past`: by the earlier
    ownership periods' appenders), and delivered from it."""
    now = {} if appender is None else _appender_counts(appender)
    return {
        **{name: past[name] + now.get(name, 0) for name in _APPENDER_COUNTS},
        "stream_append_lag_s": 0.0 if appender is None else appender.lag_s(),
        "stream_deliveries": 0 if feed is None else feed["deliveries"],
    }


@asynccontextmanager
async def open_cluster(
    settings: ClusterSettings | None, store: Any, call_timeout_s: float = 3.0,
    books: BookLimits = BookLimits(), auth: Authenticator | None = None,
    actor_config: ActorConfig = ActorConfig(),
) -> AsyncIterator[Cluster | None]:
    """The node's `Cluster` for the block, or None without `[cluster]` (nothing is opened).
    `call_timeout_s`: a broker write's timeout, which the lease must outlast (else a warning);
    `books`: the lifetimes and caps of the tickets and sessions kept in Redis; `auth`: the
    web front's tokens, which take the rotations other nodes keep in the store;
    `actor_config`: the accounts' replay size (each stream's) and what a snapshot holds."""
    if settings is None:
        yield None
        return
    if getattr(store, "engine", None) != "postgres":  # the settings refuse it; be sure of it
        raise RuntimeError("[cluster] needs the Postgres store")
    store.start_fencing()
    if settings.lease_s - settings.renew_s - settings.margin_s < call_timeout_s:
        log.warning("[cluster] lease_s - renew_s - margin_s (%g s) is shorter than a broker "
                    "call's timeout (%g s): the owner refuses every order call its lease would "
                    "not outlast, so most orders will be refused; lengthen lease_s",
                    settings.lease_s - settings.renew_s - settings.margin_s, call_timeout_s)
    # the stream reader's own client (its catch-up reads must not delay lease renewals)
    reader = coredis.Redis.from_url(settings.redis_url, decode_responses=True,
                                    connect_timeout=1.0, stream_timeout=5.0)
    async with (
        open_leases(settings) as leases, reader, AsyncExitStack() as stack,
        trio.open_nursery() as nursery,
    ):
        feeds = StreamFeeds(reader, XReadConnection(settings.redis_url), settings.key_prefix,
                            store, actor_config)
        cluster = Cluster(leases, store, TokenVault(store, settings.token_key, settings.node_id),
                          books, feeds, actor_config.replay_buffer)
        if settings.secret:
            cluster.forwarder = await stack.enter_async_context(open_forwarder(
                OwnerFinder(leases, cluster.owns), settings.secret, settings.forward_timeout_s,
                settings.renew_s))
        else:
            log.warning("%s is not set: requests for accounts other nodes own are refused "
                        "(503), not forwarded to their owner", settings.secret_env)
        if not settings.token_key:
            log.warning("ORDERDESK_TOKEN_KEY is not set: access tokens cannot be shared with "
                        "the other nodes, and `orderdesk credentials` is refused on this node")
        nursery.start_soon(cluster.announce)
        nursery.start_soon(cluster.renewer.run)
        nursery.start_soon(feeds.run)
        nursery.start_soon(cluster.acquirer.run)
        nursery.start_soon(cluster.placement.run)
        nursery.start_soon(cluster.handoffs.run)
        nursery.start_soon(cluster.collector.run)
        nursery.start_soon(cluster.sessions.watch)  # sessions ended on other nodes
        if auth is not None:  # tokens rotated on other nodes
            nursery.start_soon(follow_rotations, store, auth, settings.session_check_s)
        try:
            yield cluster
        finally:
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                try:  # the others place nothing more here (its accounts were handed over)
                    await leases.retire()
                except REDIS_ERRORS as exc:
                    log.warning("cannot take this node out of the nodes hash: %s", exc)
