"""The actors' sections of the configuration: accounts, their webhooks, limits, the ticker, batches.

Plain frozen values; `supervision.settings` builds them from orderdesk.toml and the environment.
"""

from __future__ import annotations

import datetime as dt

import attrs

#: `[batches] unhedged_parallel`: what a `parallel` basket that fits only hedged gets.
UNHEDGED_PARALLEL = ("hedge_first", "refuse")
#: Fewest seconds between two periodic reconciles (`[ticker] reconcile_interval_s`): each is a
#: GET /orders, counted against Kite's read limits.
MIN_RECONCILE_INTERVAL_S = 15.0
#: `[ticker] connect_rate_per_s` and `connects_in_flight`: upstream connects (first ones and
#: reconnects alike) the whole process opens per second, and has in handshake at once.
CONNECT_RATE_PER_S = 200.0
CONNECTS_IN_FLIGHT = 100


@attrs.frozen
class ClientToken:
    """A bearer token of an account's API/websocket client; `name` is what logs and audit show."""

    name: str
    value: str = attrs.field(repr=False)


@attrs.frozen
class WebhookSettings:
    url: str
    secret: str = attrs.field(repr=False, default="")


@attrs.frozen
class AccountSettings:
    id: str
    broker: str  # "paper" or "kite"
    tokens: tuple[ClientToken, ...] = ()
    api_key: str = attrs.field(default="paper", repr=False)
    access_token: str = attrs.field(default="", repr=False)
    # The daily login: the app's secret ("" for a kite account without api_secret_env: no
    # login route) and, when set, the only Kite user the callback accepts.
    api_secret: str = attrs.field(default="paper", repr=False)
    user_id: str | None = None
    rest_url: str | None = None  # None: the embedded venue
    ticker_url: str | None = None
    login_url: str | None = None  # None: Kite's, or the venue's stand-in for a paper account
    webhooks: tuple[WebhookSettings, ...] = ()


@attrs.frozen
class TickerSettings:
    """`[ticker]`: when a silent ticker socket is dead, how reconnects back off, how often a
    working order is reconciled, how fast the process opens upstream sockets, how far apart
    its one ticker reader's rounds may be while sockets are busy (0: no pacing). None: the
    default (Kite's clients' figures; CONNECT_RATE_PER_S, CONNECTS_IN_FLIGHT)."""

    stall_timeout_s: float | None = None  # default 5 s
    reconnect_initial_s: float | None = None  # default 2 s, plus up to reconnect_jitter_s
    reconnect_max_s: float | None = None  # default 60 s
    reconnect_jitter_s: float | None = None  # default 3 s
    reconcile_interval_s: float | None = None  # default 20 s
    connect_rate_per_s: float | None = None
    connects_in_flight: int | None = None
    read_gather_s: float | None = None  # default 5 ms (brokers.ticker_reader.GATHER_S)

    def given(self) -> dict[str, float]:
        """The keys the file sets."""
        return {k: v for k, v in attrs.asdict(self).items() if v is not None}

    def connect_pace(self) -> tuple[float, int]:
        """Connects per second and in flight, the defaults where the file sets none."""
        rate = CONNECT_RATE_PER_S if self.connect_rate_per_s is None else self.connect_rate_per_s
        cap = CONNECTS_IN_FLIGHT if self.connects_in_flight is None else self.connects_in_flight
        return rate, cap


@attrs.frozen
class RetentionSettings:
    """`[retention]`: how many IST days the store keeps (today included), when the daily
    prune runs (IST, outside every session), and how many final orders an account's book
    holds and its snapshot carries (older ones: GET /accounts/{id}/orders?before=)."""

    days: int = 7
    prune_at: dt.time = dt.time(3, 0)
    snapshot_finished_orders: int = 500
    book_finished_orders: int = 1_000


@attrs.frozen
class LimitSettings:
    """`[limits]`: Kite's per-user budgets, kept per account (0 turns a limit off)."""

    orders_per_s: int = 10
    orders_per_minute: int | None = 200
    orders_per_day: int | None = 3000
    reserve: int = 20  # of each minute and day: only rollbacks and the kill switch spend it
    reads_per_s: int | None = 10
