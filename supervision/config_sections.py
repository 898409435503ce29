"""The sections of orderdesk.toml beside the accounts: [calendar], [ticker], [batches],
[limits], [retention], the venue's limits, and the [server]/[database] values that need a
rule."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import attrs

from actors.calendar import EXCHANGES_WITH_SESSIONS, SessionHours, TradingCalendar, parse_holidays
from actors.settings import (
    MIN_RECONCILE_INTERVAL_S,
    UNHEDGED_PARALLEL,
    LimitSettings,
    RetentionSettings,
    TickerSettings,
)
from web.settings import DEFAULT_POOL_SIZE

from .config_fields import ConfigError, count, seconds

#: Kite's figures, the venue's defaults: what a paper account meets is what a real one would.
VENUE_LIMITS = {"rate_limit_per_minute": 200, "rate_limit_per_day": 3000,
                "modifications_per_order": 25, "read_limit_per_s": 10}


def parse_calendar(table: Mapping[str, Any]) -> TradingCalendar:
    """`[calendar] holidays = ["2026-12-25"]`, `sessions = { MCX = "09:00-23:55" }`."""
    holidays = table.get("holidays", [])
    if not isinstance(holidays, list):
        raise ConfigError("calendar.holidays: must be a list of dates YYYY-MM-DD")
    try:
        days = parse_holidays(holidays, "calendar.holidays")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    sessions = table.get("sessions", {})
    if not isinstance(sessions, dict):
        raise ConfigError('calendar.sessions: must be a table { EXCHANGE = "HH:MM-HH:MM" }')
    hours = {}
    for exchange, value in sessions.items():
        where = f"calendar.sessions.{exchange}"
        if exchange not in EXCHANGES_WITH_SESSIONS:
            raise ConfigError(f"{where}: unknown exchange (one of "
                              f"{', '.join(sorted(EXCHANGES_WITH_SESSIONS))})")
        opens, _, closes = str(value).partition("-")
        try:
            hours[exchange] = SessionHours(dt.time.fromisoformat(opens),
                                           dt.time.fromisoformat(closes))
        except ValueError:
            raise ConfigError(f'{where}: must be "HH:MM-HH:MM" (IST), not {value!r}') from None
    return TradingCalendar(hours, days)


def parse_ticker(table: Mapping[str, Any]) -> TickerSettings:
    names = {f.name for f in attrs.fields(TickerSettings)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise ConfigError(f"ticker.{unknown[0]}: unknown key (known: {', '.join(sorted(names))})")
    pace = {"connect_rate_per_s", "connects_in_flight"}
    ticker = TickerSettings(**{
        name: seconds(table, name, 0.0, "ticker",
                       minimum=0.0 if name in ("reconnect_jitter_s", "read_gather_s") else 0.001)
        for name in names - pace if name in table}, **_connect_pace(table))
    initial, top = ticker.reconnect_initial_s, ticker.reconnect_max_s
    if initial is not None and top is not None and top < initial:
        raise ConfigError(f"ticker.reconnect_max_s: must be at least reconnect_initial_s "
                          f"({initial:g}), not {top:g}")
    interval = ticker.reconcile_interval_s
    if interval is not None and interval < MIN_RECONCILE_INTERVAL_S:
        raise ConfigError(f"ticker.reconcile_interval_s: must be at least "
                          f"{MIN_RECONCILE_INTERVAL_S:g} s (each is a GET /orders within Kite's "
                          f"read limits), not {interval:g}")
    return ticker


def _connect_pace(table: Mapping[str, Any]) -> dict[str, Any]:
    """`connect_rate_per_s` (connects a second, > 0) and `connects_in_flight` (>= 1)."""
    pace: dict[str, Any] = {}
    rate = table.get("connect_rate_per_s")
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 100_000:
            raise ConfigError(f"ticker.connect_rate_per_s: must be a number of connects a "
                              f"second > 0 (at most 100000), not {rate!r}")
        pace["connect_rate_per_s"] = float(rate)
    cap = table.get("connects_in_flight")
    if cap is not None:
        if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= 100_000:
            raise ConfigError(f"ticker.connects_in_flight: must be a whole number from 1 to "
                              f"100000, not {cap!r}")
        pace["connects_in_flight"] = cap
    return pace


def positions_rate(table: Mapping[str, Any]) -> float:
    """`[positions] max_rate_hz`: positions messages per second per account at most."""
    unknown = sorted(set(table) - {"max_rate_hz"})
    if unknown:
        raise ConfigError(f"positions.{unknown[0]}: unknown key (known: max_rate_hz)")
    value = table.get("max_rate_hz", 4.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.1 <= value <= 100:
        raise ConfigError(f"positions.max_rate_hz: must be a number from 0.1 to 100, "
                          f"not {value!r}")
    return float(value)


def unhedged_parallel(batches: Mapping[str, Any]) -> str:
    value = batches.get("unhedged_parallel", UNHEDGED_PARALLEL[0])
    if value not in UNHEDGED_PARALLEL:
        raise ConfigError(f'batches.unhedged_parallel: must be "hedge_first" or "refuse", '
                          f"not {value!r}")
    return str(value)


def venue_limits(venue: Mapping[str, Any]) -> dict[str, int | None]:
    return {key: count(venue, key, default, "venue") for key, default in VENUE_LIMITS.items()}


def parse_limits(table: Mapping[str, Any]) -> LimitSettings:
    defaults = LimitSettings()
    unknown = set(table) - {f.name for f in attrs.fields(LimitSettings)}
    if unknown:
        raise ConfigError(f"limits.{sorted(unknown)[0]}: not a known limit")
    per_s = count(table, "orders_per_s", defaults.orders_per_s, "limits")
    if per_s is None:
        raise ConfigError("limits.orders_per_s: must be a whole number >= 1")
    limits = LimitSettings(
        orders_per_s=per_s,
        orders_per_minute=count(table, "orders_per_minute", defaults.orders_per_minute, "limits"),
        orders_per_day=count(table, "orders_per_day", defaults.orders_per_day, "limits"),
        reserve=count(table, "reserve", defaults.reserve, "limits") or 0,
        reads_per_s=count(table, "reads_per_s", defaults.reads_per_s, "limits"),
    )
    for key in ("orders_per_minute", "orders_per_day"):
        limit = getattr(limits, key)
        if limit is not None and limits.reserve >= limit:
            raise ConfigError(f"limits.reserve: must be below limits.{key} ({limit}), "
                              f"not {limits.reserve}")
    return limits


def pool_size(database: Mapping[str, Any]) -> int:
    value = database.get("pool_size", DEFAULT_POOL_SIZE)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise ConfigError(f"database.pool_size: must be an integer 1..1000, not {value!r}")
    return value


def metrics_bind(server: Mapping[str, Any], bind: str) -> str | None:
    value = server.get("metrics_bind")
    if value is None:
        return None
    host, _, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not host or not port.isdigit():
        raise ConfigError(f'server.metrics_bind: must be "HOST:PORT", not {value!r}')
    if value == bind and not value.endswith(":0"):
        raise ConfigError("server.metrics_bind: must differ from server.bind")
    return str(value)


def parse_retention(table: Mapping[str, Any]) -> RetentionSettings:
    """`[retention]`: days kept, the prune's IST time, the final orders a book holds and a
    snapshot carries."""
    known = {"days", "prune_at", "snapshot_finished_orders", "book_finished_orders"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"retention.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
    default = RetentionSettings()
    values: dict[str, Any] = {}
    for key in ("days", "snapshot_finished_orders", "book_finished_orders"):
        value = table.get(key, getattr(default, key))
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"retention.{key}: must be a whole number >= 1, not {value!r}")
        values[key] = value
    if values["book_finished_orders"] < values["snapshot_finished_orders"]:
        raise ConfigError("retention.book_finished_orders: must be at least "
                          "snapshot_finished_orders")
    prune_at = table.get("prune_at", default.prune_at)
    try:
        prune_at = prune_at if isinstance(prune_at, dt.time) else dt.time.fromisoformat(prune_at)
    except (TypeError, ValueError):
        raise ConfigError(
            f'retention.prune_at: must be a time "HH:MM" (IST), not {prune_at!r}') from None
    return RetentionSettings(prune_at=prune_at, **values)
