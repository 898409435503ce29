"""Configuration: one frozen object, built once at start from orderdesk.toml and the environment.

With no file at all orderdesk runs on embedded defaults: one paper account `primary`, the
embedded paper venue, SQLite under ./var/, and generated tokens kept under ./var/ (printed once,
when first generated) so a fresh checkout serves with no set-up.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from actors.calendar import (
    DEFAULT_INSTRUMENT_REFRESH,
    EXCHANGES_WITH_SESSIONS,
    SessionHours,
    TradingCalendar,
    parse_holidays,
)
from brokers.paper import VenueConfig

DEFAULT_BIND = "127.0.0.1:8081"
DEFAULT_VENUE_BIND = "127.0.0.1:8765"
#: The venue's state files under the var directory: the embedded venue's, a standalone one's.
VENUE_STATE = "venue.json"
STANDALONE_VENUE_STATE = "venue-standalone.json"
#: `[venue] state` / `orderdesk venue --state` value that keeps the venue's state in memory.
IN_MEMORY = "memory"
#: Seconds running batches get to finish or roll back at SIGTERM/SIGINT before they are cancelled.
DEFAULT_SHUTDOWN_GRACE_S = 10.0
#: Seconds a client may take to accept one write before its connection is dropped.
DEFAULT_SEND_TIMEOUT_S = 10.0
#: Seconds a browser session (the session cookie set by signing in on the page) lasts.
DEFAULT_SESSION_TTL_S = 8 * 3600.0
#: Postgres connections in the pool ([database] pool_size).
DEFAULT_POOL_SIZE = 10
#: One store write attempt of a batch ([database] store_timeout_s); failed ones are retried.
DEFAULT_STORE_TIMEOUT_S = 5.0
#: `[batches] unhedged_parallel`: what a `parallel` basket that fits only hedged gets.
UNHEDGED_PARALLEL = ("hedge_first", "refuse")


class ConfigError(Exception):
    """The configuration is unusable; the message names the key and the rule."""


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
    working order is reconciled. None: the default (Kite's clients' figures)."""

    stall_timeout_s: float | None = None  # default 5 s
    reconnect_initial_s: float | None = None  # default 2 s, plus up to reconnect_jitter_s
    reconnect_max_s: float | None = None  # default 60 s
    reconnect_jitter_s: float | None = None  # default 3 s
    reconcile_interval_s: float | None = None  # default 20 s

    def given(self) -> dict[str, float]:
        """The keys the file sets."""
        return {k: v for k, v in attrs.asdict(self).items() if v is not None}


#: Fewest seconds between two periodic reconciles (`[ticker] reconcile_interval_s`): each is a
#: GET /orders, counted against Kite's read limits.
MIN_RECONCILE_INTERVAL_S = 15.0


@attrs.frozen
class LimitSettings:
    """`[limits]`: Kite's per-user budgets, kept per account (0 turns a limit off)."""

    orders_per_s: int = 10
    orders_per_minute: int | None = 200
    orders_per_day: int | None = 3000
    reserve: int = 20  # of each minute and day: only rollbacks and the kill switch spend it
    reads_per_s: int | None = 10


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
    ticker: TickerSettings = TickerSettings()

    def account(self, account_id: str) -> AccountSettings | None:
        return next((a for a in self.accounts if a.id == account_id), None)


def load_settings(
    path: str | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the TOML file (if any), then apply the environment's overrides."""
    env = os.environ if environ is None else environ
    path = path or env.get("ORDERDESK_CONFIG")
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        return _from_document(raw, env)
    return _embedded_defaults(env)


def _embedded_defaults(env: Mapping[str, str]) -> Settings:
    var_dir = var_dir_of(env)
    generated = _generated_secrets(var_dir)
    given = _env_overrides(
        env,
        _Overridable(
            bind=DEFAULT_BIND,
            admin_token=generated["admin_token"],
            metrics_token="",
            database_url=_default_database(var_dir),
        ),
    )
    account = AccountSettings(
        id="primary",
        broker="paper",
        tokens=(ClientToken("primary-generated", generated["primary_token"]),),
        access_token="paper-primary",
        user_id="primary",
    )
    venue_url = _standalone_venue_url(env)
    return Settings(
        bind=given.bind,
        admin_token=given.admin_token,
        metrics_token=given.metrics_token,
        allowed_origins=(f"http://{given.bind}",),
        database_url=given.database_url,
        venue=None if venue_url else VenueConfig(
            bind=DEFAULT_VENUE_BIND, accounts=("primary",), state_file=str(var_dir / VENUE_STATE),
            **_venue_limits({}),
        ),
        accounts=(_on_venue(account, venue_url),),
        var_dir=var_dir,
        generated_secrets=generated,
    )


@attrs.frozen
class _Overridable:
    """The settings an environment variable overrides, with or without a file."""

    bind: str
    admin_token: str
    metrics_token: str
    database_url: str


#: Which environment variable overrides which `_Overridable` field.
_ENV_OVERRIDES = {
    "bind": "ORDERDESK_BIND",
    "admin_token": "ORDERDESK_ADMIN_TOKEN",
    "metrics_token": "ORDERDESK_METRICS_TOKEN",
    "database_url": "DATABASE_URL",
}


def _env_overrides(env: Mapping[str, str], given: _Overridable) -> _Overridable:
    """`given` (the file's values, or the embedded defaults) with each field whose environment
    variable is set taken from it: the one place the overrides are applied."""
    return attrs.evolve(
        given, **{field: env[name] for field, name in _ENV_OVERRIDES.items() if name in env}
    )


def _default_database(var_dir: Path) -> str:
    return f"sqlite:///{var_dir}/orderdesk.db"


def _generated_secrets(var_dir: Path) -> dict[str, str]:
    """Tokens for the no-config start, generated once and kept under var/ (mode 0600)."""
    path = var_dir / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    var_dir.mkdir(parents=True, exist_ok=True)
    values = {
        "primary_token": secrets.token_urlsafe(24),
        "admin_token": secrets.token_urlsafe(24),
        "_new": "1",
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
    with os.fdopen(fd, "w") as file:
        json.dump({k: v for k, v in values.items() if k != "_new"}, file)
    return values


def _from_document(doc: Mapping[str, Any], env: Mapping[str, str]) -> Settings:
    server = _table(doc, "server")
    database = _table(doc, "database")
    batches = _table(doc, "batches")
    venue_doc = doc.get("venue")
    var_dir = var_dir_of(env)
    given = _env_overrides(
        env,
        _Overridable(
            bind=str(server.get("bind", DEFAULT_BIND)),
            admin_token=str(server.get("admin_token", "")),
            metrics_token=str(server.get("metrics_token", "")),
            database_url=str(database.get("url", _default_database(var_dir))),
        ),
    )
    bind = given.bind
    venue_url = _standalone_venue_url(env)
    accounts = tuple(
        _on_venue(_account(i, a, env), venue_url) for i, a in enumerate(doc.get("accounts", []))
    )
    if not accounts:
        raise ConfigError("accounts: at least one [[accounts]] table is required")
    ids = [a.id for a in accounts]
    if len(set(ids)) != len(ids):
        raise ConfigError("accounts: account ids must be unique")
    venue = None
    if venue_doc is not None and venue_url is None:
        if not isinstance(venue_doc, dict):
            raise ConfigError("venue: must be a table")
        venue = VenueConfig(
            bind=str(venue_doc.get("bind", DEFAULT_VENUE_BIND)),
            seed=int(venue_doc.get("seed", 42)),
            accounts=tuple(a.id for a in accounts if a.broker == "paper"),
            funds=float(venue_doc.get("funds", 10_000_000.0)),
            rate_limit_per_s=int(venue_doc.get("rate_limit_per_s", 10)) or None,  # 0: off
            **_venue_limits(venue_doc),
            require_market_protection=bool(venue_doc.get("require_market_protection", True)),
            instruments_csv=venue_doc.get("instruments_csv"),
            freeze_limits=dict(venue_doc.get("freeze_limits", {})),
            state_file=venue_state(venue_doc.get("state"), var_dir / VENUE_STATE),
        )
    for account in accounts:
        if account.broker == "paper" and account.rest_url is None and venue is None:
            raise ConfigError(
                f"accounts[{account.id}].rest_url: a paper account needs [venue] "
                "or the rest_url/ticker_url of a standalone `orderdesk venue`"
            )
    admin_token = given.admin_token
    if not admin_token:
        raise ConfigError("server.admin_token: required (or ORDERDESK_ADMIN_TOKEN)")
    metrics_token = given.metrics_token
    _check_tokens(admin_token, accounts, metrics_token)
    calendar_doc = _table(doc, "calendar")
    return Settings(
        calendar=_calendar(calendar_doc) if "calendar" in doc else None,
        instrument_refresh=_clock(calendar_doc, "instrument_refresh", DEFAULT_INSTRUMENT_REFRESH),
        bind=bind,
        admin_token=admin_token,
        metrics_token=metrics_token,
        metrics_bind=_metrics_bind(server, bind),
        allowed_origins=tuple(server.get("allowed_origins", (f"http://{bind}",))),
        database_url=given.database_url,
        pool_size=_pool_size(database),
        store_timeout_s=_seconds(database, "store_timeout_s", DEFAULT_STORE_TIMEOUT_S,
                                 "database", minimum=0.001),
        venue=venue,
        limits=_limits(_table(doc, "limits")),
        accounts=accounts,
        var_dir=var_dir,
        shutdown_grace_s=_seconds(server, "shutdown_grace_s", DEFAULT_SHUTDOWN_GRACE_S),
        send_timeout_s=_seconds(server, "send_timeout_s", DEFAULT_SEND_TIMEOUT_S),
        session_ttl_s=_seconds(server, "session_ttl_s", DEFAULT_SESSION_TTL_S, minimum=0.001),
        unhedged_parallel=_unhedged_parallel(batches),
        ticker=_ticker(_table(doc, "ticker")),
    )


def _standalone_venue_url(env: Mapping[str, str]) -> str | None:
    """ORDERDESK_VENUE_URL: a running `orderdesk venue` that paper accounts trade on instead of
    an embedded one (the Procfile's `web` sets it to its `venue` process)."""
    url = env.get("ORDERDESK_VENUE_URL")
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"ORDERDESK_VENUE_URL: must be the http:// URL of `orderdesk venue`, not {url!r}"
        )
    return url.rstrip("/")


def _on_venue(account: AccountSettings, venue_url: str | None) -> AccountSettings:
    """A paper account without URLs of its own trades on the standalone venue, if one is set."""
    if venue_url is None or account.broker != "paper" or account.rest_url is not None:
        return account
    ticker = "ws" + venue_url.removeprefix("http")  # http -> ws, https -> wss
    return attrs.evolve(account, rest_url=venue_url, ticker_url=f"{ticker}/")


def venue_state(value: object, default: Path) -> str | None:
    """The venue's state file from `[venue] state` / `--state`: absent, the default file;
    "memory", none (state kept in memory only)."""
    if value is None:
        return str(default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f'venue.state: a file path or "{IN_MEMORY}", not {value!r}')
    return None if value == IN_MEMORY else value


def var_dir_of(environ: Mapping[str, str] | None = None) -> Path:
    """The directory of the SQLite default, secrets.json and the venue's state file."""
    return Path((os.environ if environ is None else environ).get("ORDERDESK_VAR", "var"))


def _table(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: must be a table")
    return value


def _seconds(
    table: Mapping[str, Any], key: str, default: float, where: str = "server",
    *, minimum: float = 0.0,
) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= minimum:
        rule = ">= 0" if minimum == 0 else "> 0"
        raise ConfigError(f"{where}.{key}: must be a number of seconds {rule}, not {value!r}")
    return float(value)


def _clock(table: Mapping[str, Any], key: str, default: dt.time) -> dt.time:
    value = table.get(key, default)
    if isinstance(value, dt.time):  # TOML's own local time (08:30:00)
        return value
    try:
        if isinstance(value, str):
            return dt.time.fromisoformat(value)
    except ValueError:
        pass
    raise ConfigError(f'calendar.{key}: must be a time "HH:MM" (IST), not {value!r}')


def _calendar(table: Mapping[str, Any]) -> TradingCalendar:
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


def _ticker(table: Mapping[str, Any]) -> TickerSettings:
    names = {f.name for f in attrs.fields(TickerSettings)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise ConfigError(f"ticker.{unknown[0]}: unknown key (known: {', '.join(sorted(names))})")
    ticker = TickerSettings(**{
        name: _seconds(table, name, 0.0, "ticker",
                       minimum=0.0 if name == "reconnect_jitter_s" else 0.001)
        for name in names if name in table})
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


def _unhedged_parallel(batches: Mapping[str, Any]) -> str:
    value = batches.get("unhedged_parallel", UNHEDGED_PARALLEL[0])
    if value not in UNHEDGED_PARALLEL:
        raise ConfigError(f'batches.unhedged_parallel: must be "hedge_first" or "refuse", '
                          f"not {value!r}")
    return str(value)


#: Kite's figures, the venue's defaults: what a paper account meets is what a real one would.
VENUE_LIMITS = {"rate_limit_per_minute": 200, "rate_limit_per_day": 3000,
                "modifications_per_order": 25, "read_limit_per_s": 10}


def _count(table: Mapping[str, Any], key: str, default: int | None, where: str) -> int | None:
    """A whole number >= 0 from `table` (0: off, None)."""
    value = table.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}.{key}: must be a whole number >= 0 (0: off), not {value!r}")
    return value or None


def _venue_limits(venue: Mapping[str, Any]) -> dict[str, int | None]:
    return {key: _count(venue, key, default, "venue") for key, default in VENUE_LIMITS.items()}


def _limits(table: Mapping[str, Any]) -> LimitSettings:
    defaults = LimitSettings()
    unknown = set(table) - {f.name for f in attrs.fields(LimitSettings)}
    if unknown:
        raise ConfigError(f"limits.{sorted(unknown)[0]}: not a known limit")
    per_s = _count(table, "orders_per_s", defaults.orders_per_s, "limits")
    if per_s is None:
        raise ConfigError("limits.orders_per_s: must be a whole number >= 1")
    limits = LimitSettings(
        orders_per_s=per_s,
        orders_per_minute=_count(table, "orders_per_minute", defaults.orders_per_minute, "limits"),
        orders_per_day=_count(table, "orders_per_day", defaults.orders_per_day, "limits"),
        reserve=_count(table, "reserve", defaults.reserve, "limits") or 0,
        reads_per_s=_count(table, "reads_per_s", defaults.reads_per_s, "limits"),
    )
    for key in ("orders_per_minute", "orders_per_day"):
        limit = getattr(limits, key)
        if limit is not None and limits.reserve >= limit:
            raise ConfigError(f"limits.reserve: must be below limits.{key} ({limit}), "
                              f"not {limits.reserve}")
    return limits


def _pool_size(database: Mapping[str, Any]) -> int:
    value = database.get("pool_size", DEFAULT_POOL_SIZE)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise ConfigError(f"database.pool_size: must be an integer 1..1000, not {value!r}")
    return value


def _account(index: int, doc: Any, env: Mapping[str, str]) -> AccountSettings:
    where = f"accounts[{index}]"
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or not doc["id"]:
        raise ConfigError(f"{where}.id: required, a non-empty string")
    account_id = doc["id"]
    broker = doc.get("broker", "paper")
    if broker not in ("paper", "kite"):
        raise ConfigError(f"{where}.broker: must be 'paper' or 'kite', not {broker!r}")
    tokens = tuple(_token(account_id, i, t) for i, t in enumerate(doc.get("tokens", [])))
    webhooks = tuple(_webhook(f"{where}.webhooks[{i}]", h, env)
                     for i, h in enumerate(doc.get("webhooks", [])))
    if broker == "kite":
        api_key = _from_env(env, doc, "api_key_env", f"{where}.api_key_env")
        if not api_key:
            raise ConfigError(f"{where}.api_key_env: the variable {doc['api_key_env']} is not set")
        # A missing access token is not fatal: the actor waits in auth_expired for one.
        access_token = _from_env(env, doc, "access_token_env", f"{where}.access_token_env")
        return AccountSettings(
            id=account_id,
            broker=broker,
            tokens=tokens,
            api_key=api_key,
            access_token=access_token,
            api_secret=_api_secret(env, doc, where),
            user_id=_optional_str(doc, "user_id", where),
            rest_url=str(doc.get("rest_url", "https://api.kite.trade")),
            ticker_url=str(doc.get("ticker_url", "wss://ws.kite.trade")),
            login_url=_optional_str(doc, "login_url", where),
            webhooks=webhooks,
        )
    return AccountSettings(
        id=account_id,
        broker=broker,
        tokens=tokens,
        api_key="paper",
        access_token=f"paper-{account_id}",
        user_id=account_id,
        rest_url=doc.get("rest_url"),
        ticker_url=doc.get("ticker_url"),
        login_url=_optional_str(doc, "login_url", where),
        webhooks=webhooks,
    )


def _api_secret(env: Mapping[str, str], doc: Mapping[str, Any], where: str) -> str:
    """The Kite app's secret, from the variable `api_secret_env` names ("" without one)."""
    if "api_secret_env" not in doc:
        return ""
    secret = _from_env(env, doc, "api_secret_env", f"{where}.api_secret_env")
    if not secret:
        raise ConfigError(
            f"{where}.api_secret_env: the variable {doc['api_secret_env']} is not set"
        )
    return secret


def _optional_str(doc: Mapping[str, Any], key: str, where: str) -> str | None:
    value = doc.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{where}.{key}: must be a non-empty string, not {value!r}")
    return value


def _token(account_id: str, index: int, doc: Any) -> ClientToken:
    if isinstance(doc, str):
        return ClientToken(f"{account_id}#{index}", doc)
    if isinstance(doc, dict) and isinstance(doc.get("token"), str):
        return ClientToken(str(doc.get("name", f"{account_id}#{index}")), doc["token"])
    raise ConfigError(f"accounts[{account_id}].tokens[{index}]: a string or {{name, token}}")


def _webhook(where: str, doc: Any, env: Mapping[str, str]) -> WebhookSettings:
    if not isinstance(doc, dict) or not isinstance(doc.get("url"), str):
        raise ConfigError(f"{where}.url: required, an http(s) URL")
    if not doc["url"].startswith(("http://", "https://")):
        raise ConfigError(f"{where}.url: must start with http:// or https://")
    secret_env = doc.get("secret_env")
    if not isinstance(secret_env, str) or not env.get(secret_env):
        raise ConfigError(f"{where}.secret_env: required, a set environment variable "
                          "(webhooks are always signed)")
    return WebhookSettings(url=doc["url"], secret=env[secret_env])


def _metrics_bind(server: Mapping[str, Any], bind: str) -> str | None:
    value = server.get("metrics_bind")
    if value is None:
        return None
    host, _, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not host or not port.isdigit():
        raise ConfigError(f'server.metrics_bind: must be "HOST:PORT", not {value!r}')
    if value == bind and not value.endswith(":0"):
        raise ConfigError("server.metrics_bind: must differ from server.bind")
    return str(value)


def _check_tokens(
    admin_token: str, accounts: tuple[AccountSettings, ...], metrics_token: str = ""
) -> None:
    """A token names exactly one caller: no token shared between accounts, the admin and
    Prometheus (so the metrics token can never be the admin's)."""
    seen: dict[str, str] = {admin_token: "server.admin_token"}
    if metrics_token == admin_token:
        raise ConfigError("server.metrics_token: must not be the admin token")
    if metrics_token:
        seen[metrics_token] = "server.metrics_token"
    for account in accounts:
        for token in account.tokens:
            if not token.value:
                raise ConfigError(f"accounts[{account.id}].tokens: a token is empty")
            if token.value in seen:
                raise ConfigError(
                    f"accounts[{account.id}].tokens: token {token.name!r} is also "
                    f"{seen[token.value]}; every token must be unique"
                )
            seen[token.value] = f"accounts[{account.id}] {token.name!r}"


def _from_env(env: Mapping[str, str], doc: Mapping[str, Any], key: str, where: str) -> str:
    name = doc.get(key)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: required, the name of an environment variable")
    return env.get(name, "")
