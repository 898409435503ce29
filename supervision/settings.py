"""Configuration: one frozen object, built once at start from orderdesk.toml and the environment.

With no file at all orderdesk runs on embedded defaults: one paper account `primary`, the
embedded paper venue, SQLite under ./var/, and generated tokens kept under ./var/ (printed once,
when first generated) so a fresh checkout serves with no set-up. The values are the owners'
(`web.settings`, `actors.settings`); this module only reads them in.
"""

from __future__ import annotations

import json
import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from actors.calendar import DEFAULT_INSTRUMENT_REFRESH
from actors.settings import AccountSettings, ClientToken
from brokers.paper import VenueConfig
from web.settings import (
    DEFAULT_BIND,
    DEFAULT_LATE_WATCH_S,
    DEFAULT_SEND_TIMEOUT_S,
    DEFAULT_SESSION_TTL_S,
    DEFAULT_SHUTDOWN_GRACE_S,
    DEFAULT_STORE_TIMEOUT_S,
    Settings,
)

from .config_accounts import check_tokens, parse_account
from .config_cluster import parse_cluster
from .config_fields import ConfigError, clock, seconds, table
from .config_sections import (
    metrics_bind,
    parse_calendar,
    parse_limits,
    parse_retention,
    parse_ticker,
    pool_size,
    positions_rate,
    unhedged_parallel,
    venue_limits,
)

__all__ = ["ConfigError", "Settings", "load_settings", "var_dir_of", "venue_state"]

DEFAULT_VENUE_BIND = "127.0.0.1:8765"
#: The venue's state files under the var directory: the embedded venue's, a standalone one's.
VENUE_STATE = "venue.json"
STANDALONE_VENUE_STATE = "venue-standalone.json"
#: `[venue] state` / `orderdesk venue --state` value that keeps the venue's state in memory.
IN_MEMORY = "memory"


def load_settings(
    path: str | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the TOML file (if any), then apply the environment's overrides."""
    env = os.environ if environ is None else environ
    given = _Environment.read(env)
    path = path or given.config
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        return _from_document(raw, given, env)
    return _embedded_defaults(given)


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


@attrs.frozen
class _Environment:
    """Everything the environment says about the settings, read here and nowhere else (the
    `*_env` keys of an account name secrets, not overrides: `config_accounts` reads those)."""

    config: str | None
    var_dir: Path
    venue_url: str | None
    overrides: Mapping[str, str]

    @classmethod
    def read(cls, env: Mapping[str, str]) -> _Environment:
        return cls(
            config=env.get("ORDERDESK_CONFIG"),
            var_dir=var_dir_of(env),
            venue_url=_standalone_venue_url(env.get("ORDERDESK_VENUE_URL")),
            overrides={f: env[name] for f, name in _ENV_OVERRIDES.items() if name in env},
        )

    def apply(self, given: _Overridable) -> _Overridable:
        """`given` (the file's values, or the embedded defaults) with each field whose
        environment variable is set taken from it."""
        return attrs.evolve(given, **self.overrides)


def _embedded_defaults(environment: _Environment) -> Settings:
    var_dir = environment.var_dir
    generated = _generated_secrets(var_dir)
    given = environment.apply(
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
    venue_url = environment.venue_url
    return Settings(
        bind=given.bind,
        admin_token=given.admin_token,
        metrics_token=given.metrics_token,
        allowed_origins=(f"http://{given.bind}",),
        database_url=given.database_url,
        venue=None if venue_url else VenueConfig(
            bind=DEFAULT_VENUE_BIND, accounts=("primary",), state_file=str(var_dir / VENUE_STATE),
            **venue_limits({}),
        ),
        accounts=(_on_venue(account, venue_url),),
        var_dir=var_dir,
        generated_secrets=generated,
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


def _from_document(
    doc: Mapping[str, Any], environment: _Environment, env: Mapping[str, str]
) -> Settings:
    server = table(doc, "server")
    database = table(doc, "database")
    batches = table(doc, "batches")
    venue_doc = doc.get("venue")
    var_dir = environment.var_dir
    given = environment.apply(
        _Overridable(
            bind=str(server.get("bind", DEFAULT_BIND)),
            admin_token=str(server.get("admin_token", "")),
            metrics_token=str(server.get("metrics_token", "")),
            database_url=str(database.get("url", _default_database(var_dir))),
        ),
    )
    bind = given.bind
    venue_url = environment.venue_url
    accounts = tuple(
        _on_venue(parse_account(i, a, env), venue_url)
        for i, a in enumerate(doc.get("accounts", []))
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
            **venue_limits(venue_doc),
            require_market_protection=bool(venue_doc.get("require_market_protection", True)),
            tick_interval_s=seconds(venue_doc, "tick_interval_s", 1.0, "venue", minimum=0.001),
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
    check_tokens(admin_token, accounts, metrics_token)
    calendar_doc = table(doc, "calendar")
    cluster = (parse_cluster(table(doc, "cluster"), bind, given.database_url,
                             env.get("ORDERDESK_TOKEN_KEY"), env)
               if "cluster" in doc else None)
    return Settings(
        calendar=parse_calendar(calendar_doc) if "calendar" in doc else None,
        instrument_refresh=clock(calendar_doc, "instrument_refresh", DEFAULT_INSTRUMENT_REFRESH),
        bind=bind,
        admin_token=admin_token,
        metrics_token=metrics_token,
        metrics_bind=metrics_bind(server, bind),
        allowed_origins=tuple(server.get("allowed_origins", (f"http://{bind}",))),
        database_url=given.database_url,
        pool_size=pool_size(database),
        store_timeout_s=seconds(database, "store_timeout_s", DEFAULT_STORE_TIMEOUT_S,
                                 "database", minimum=0.001),
        venue=venue,
        limits=parse_limits(table(doc, "limits")),
        accounts=accounts,
        var_dir=var_dir,
        shutdown_grace_s=seconds(server, "shutdown_grace_s", DEFAULT_SHUTDOWN_GRACE_S),
        send_timeout_s=seconds(server, "send_timeout_s", DEFAULT_SEND_TIMEOUT_S),
        session_ttl_s=seconds(server, "session_ttl_s", DEFAULT_SESSION_TTL_S, minimum=0.001),
        unhedged_parallel=unhedged_parallel(batches),
        late_watch_s=seconds(batches, "late_watch_s", DEFAULT_LATE_WATCH_S, "batches"),
        ticker=parse_ticker(table(doc, "ticker")),
        positions_max_rate_hz=positions_rate(table(doc, "positions")),
        cluster=cluster,
        retention=parse_retention(table(doc, "retention")),
    )


def _standalone_venue_url(url: str | None) -> str | None:
    """ORDERDESK_VENUE_URL: a running `orderdesk venue` that paper accounts trade on instead of
    an embedded one (the Procfile's `web` sets it to its `venue` process)."""
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
