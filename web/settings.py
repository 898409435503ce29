"""The whole configuration as the web layer holds it: the `[server]` and `[database]` values
beside the actors' sections. `supervision.settings` loads it from orderdesk.toml and the
environment; nothing here reads either.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import attrs

from actors.calendar import DEFAULT_INSTRUMENT_REFRESH, TradingCalendar
from actors.settings import (
    UNHEDGED_PARALLEL,
    AccountSettings,
    LimitSettings,
    RetentionSettings,
    TickerSettings,
)
from brokers.paper import VenueConfig

DEFAULT_BIND = "127.0.0.1:8081"
#: Seconds running batches get to finish or roll back at SIGTERM/SIGINT before they are cancelled.
DEFAULT_SHUTDOWN_GRACE_S = 10.0
#: Seconds a client may take to accept one write before its connection is dropped.
DEFAULT_SEND_TIMEOUT_S = 10.0
#: Seconds a browser session (the session cookie set by signing in on the page) lasts.
DEFAULT_SESSION_TTL_S = 8 * 3600.0
DEFAULT_LATE_WATCH_S = 300.0  # actors/orders/late_orders.py says why
#: Postgres connections in the pool ([database] pool_size).
DEFAULT_POOL_SIZE = 10
#: One store write attempt of a batch ([database] store_timeout_s); failed ones are retried.
DEFAULT_STORE_TIMEOUT_S = 5.0


#: `[cluster]` defaults: the lease's time to live, how often it is renewed, and how much before
#: its expiry (counted from when the renewal was sent) the holder stops trusting it.
DEFAULT_LEASE_S = 10.0
DEFAULT_RENEW_S = 3.0
DEFAULT_LEASE_MARGIN_S = 1.0
DEFAULT_SECRET_ENV = "ORDERDESK_CLUSTER_SECRET"
DEFAULT_FORWARD_TIMEOUT_S = 150.0


@attrs.frozen
class ClusterSettings:
    """`[cluster]`: accounts owned through a Redis lease per account, fenced by an epoch in
    Postgres. None in `Settings.cluster` (no table): one node owns everything, as before."""

    redis_url: str
    node_id: str
    advertised: str  # the node's web address others are told of (`orderdesk cluster`)
    lease_s: float = DEFAULT_LEASE_S
    renew_s: float = DEFAULT_RENEW_S
    margin_s: float = DEFAULT_LEASE_MARGIN_S
    key_prefix: str = "od"  # Redis keys are `{<prefix>:acct:<id>}:lease` (one hash slot each)
    #: How often a node checks that the sessions it holds sockets for still exist (a session
    #: ended on another node closes its sockets here within this).
    session_check_s: float = 1.0
    #: Keep each account's ticker connection open while standing by, so a takeover does not
    #: wait for its connect (a second connection per api_key: Kite allows 3).
    warm_standby: bool = False
    # ORDERDESK_TOKEN_KEY: the Fernet key sealing the access tokens kept in Postgres for the
    # other nodes ("" without it: `orderdesk credentials` is refused on this node).
    token_key: str = attrs.field(default="", repr=False)
    # The shared secret a node shows the owner when it forwards a client's request to it (the
    # environment variable `secret_env` names; "" without it: nothing is forwarded, a request
    # for an account another node owns is refused 503 as before, and the internal route
    # refuses everything). Never logged.
    secret: str = attrs.field(default="", repr=False)
    secret_env: str = DEFAULT_SECRET_ENV
    #: The longest a forwarded request waits for the owner's answer (longer than any answer the
    #: owner gives itself: a batch's deadline and rollback, an idempotent retry's wait).
    forward_timeout_s: float = DEFAULT_FORWARD_TIMEOUT_S
    #: This node's capacity relative to the others': its share of the accounts (placement.py).
    weight: float = 1.0
    #: Accounts this node hands off per second at most when the live nodes change (handoff.py).
    handoffs_per_s: float = 5.0
    #: How long a handoff lets the account's running batches finish before stepping down (the
    #: next owner recovers any left unfinished, as after a takeover).
    drain_s: float = 10.0


@attrs.frozen
class Settings:
    bind: str = DEFAULT_BIND
    admin_token: str = attrs.field(default="", repr=False)
    allowed_origins: tuple[str, ...] = ()
    database_url: str = "sqlite:///var/orderdesk.db"
    pool_size: int = DEFAULT_POOL_SIZE
    store_timeout_s: float = DEFAULT_STORE_TIMEOUT_S
    venue: VenueConfig | None = None
    limits: LimitSettings = LimitSettings()
    accounts: tuple[AccountSettings, ...] = ()
    var_dir: Path = Path("var")
    generated_secrets: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S
    session_ttl_s: float = DEFAULT_SESSION_TTL_S
    # Prometheus' read-only credential for /metrics (nothing else); and/or a listener of its
    # own that serves /metrics alone, without a token (a loopback or private address).
    metrics_token: str = attrs.field(default="", repr=False)
    metrics_bind: str | None = None
    # [calendar]: None (no table) means real accounts follow the default exchange hours and
    # paper accounts the venue's own; a table applies to every account.
    calendar: TradingCalendar | None = None
    instrument_refresh: dt.time = DEFAULT_INSTRUMENT_REFRESH
    unhedged_parallel: str = UNHEDGED_PARALLEL[0]
    late_watch_s: float = DEFAULT_LATE_WATCH_S  # [batches]
    ticker: TickerSettings = TickerSettings()
    positions_max_rate_hz: float = 4.0  # [positions] max_rate_hz: positions messages a second
    cluster: ClusterSettings | None = None  # [cluster]; None: a single node (the default)
    retention: RetentionSettings = RetentionSettings()

    def account(self, account_id: str) -> AccountSettings | None:
        return next((a for a in self.accounts if a.id == account_id), None)
