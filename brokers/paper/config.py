"""The venue's configuration (one frozen object, built once) and the address it answers on."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from types import MappingProxyType

import attrs

#: India has had no daylight saving since 1945: a fixed offset is exact.
IST = dt.timezone(dt.timedelta(hours=5, minutes=30), "IST")


def parse_clock(text: str) -> dt.time:
    """`HH:MM` or `HH:MM:SS` -> time; ValueError otherwise."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise ValueError(f"not a HH:MM[:SS] time: {text!r}")
    return dt.time(*(int(p) for p in parts))


def _freeze_map(value: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(value))


def _check_clock(_inst: object, attribute: attrs.Attribute, value: str) -> None:
    try:
        parse_clock(value)
    except ValueError as exc:
        raise ValueError(f"{attribute.name}: {exc}") from None


@attrs.frozen
class VenueConfig:
    """Everything the paper venue needs; `serve_venue(config)` takes it whole."""

    bind: str = "127.0.0.1:8765"
    seed: int = 42
    accounts: tuple[str, ...] = attrs.field(default=("primary",), converter=tuple)
    funds: float = 10_000_000.0
    rate_limit_per_s: int | None = 10
    #: The app's secret of the login exchange (`POST /session/token` checks the checksum).
    api_secret: str = attrs.field(default="paper", repr=False)
    # Kite's other limits per user (limits.py); None: off. `orderdesk.toml`'s [venue] defaults
    # to Kite's figures: 200 a minute, 3,000 a day, 25 modifications, 10 reads a second.
    rate_limit_per_minute: int | None = None
    rate_limit_per_day: int | None = None
    modifications_per_order: int | None = None
    read_limit_per_s: int | None = None
    require_market_protection: bool = True
    session_open: str = attrs.field(default="00:00", validator=_check_clock)
    session_close: str = attrs.field(default="23:59:59", validator=_check_clock)
    instruments_csv: str | None = None
    freeze_limits: Mapping[str, int] = attrs.field(
        factory=dict, converter=_freeze_map, eq=False, hash=False
    )
    #: How often the simulation steps: every instrument moves, subscribed ticks go out.
    tick_interval_s: float = 1.0
    #: Ticker sockets allowed at once per API key and user (Kite: 3).
    ticker_connections_per_key: int = 3
    #: Where orders, positions and the last order id are kept across restarts (state.py);
    #: None keeps them in memory only (order ids still never repeat).
    state_file: str | None = None


@attrs.frozen
class VenueAddress:
    """Where a running venue listens."""

    host: str
    port: int

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ticker_url(self) -> str:
        return f"ws://{self.host}:{self.port}/"
