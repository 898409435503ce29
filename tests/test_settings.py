"""Configuration: embedded defaults, the TOML file, environment overrides, clear errors."""

import datetime as dt
from pathlib import Path

import pytest

from supervision.settings import ConfigError, load_settings


def test_no_file_gives_embedded_defaults(tmp_path: Path) -> None:
    env = {"ORDERDESK_VAR": str(tmp_path / "var")}
    settings = load_settings(None, environ=env)
    assert [a.id for a in settings.accounts] == ["primary"]
    assert settings.venue is not None
    assert settings.database_url == f"sqlite:///{tmp_path}/var/orderdesk.db"
    assert settings.admin_token and settings.accounts[0].tokens[0].value
    again = load_settings(None, environ=env)
    assert again.admin_token == settings.admin_token  # kept under var/, not regenerated
    assert (tmp_path / "var" / "secrets.json").stat().st_mode & 0o777 == 0o600


def test_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "orderdesk.toml"
    path.write_text(
        """
[server]
bind = "127.0.0.1:9000"
admin_token = "admin-secret"

[database]
url = "sqlite:///x.db"

[venue]
bind = "127.0.0.1:0"
seed = 7

[[accounts]]
id = "primary"
broker = "paper"
tokens = ["primary-secret", { name = "desk", token = "desk-secret" }]

[[accounts]]
id = "live"
broker = "kite"
api_key_env = "KITE_API_KEY"
access_token_env = "KITE_ACCESS_TOKEN"
tokens = ["live-secret"]
"""
    )
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1/test", "KITE_API_KEY": "k",
           "KITE_ACCESS_TOKEN": "tok-9f3a", "ORDERDESK_BIND": "127.0.0.1:9001"}
    settings = load_settings(str(path), environ=env)
    assert settings.bind == "127.0.0.1:9001"
    assert settings.database_url.startswith("postgresql://")
    assert settings.venue is not None and settings.venue.seed == 7
    assert settings.venue.accounts == ("primary",)
    primary, live = settings.accounts
    assert [t.name for t in primary.tokens] == ["primary#0", "desk"]
    assert primary.access_token == "paper-primary"
    assert (live.api_key, live.access_token) == ("k", "tok-9f3a")
    assert "tok-9f3a" not in repr(live)


PAPER = "[server]\nadmin_token='a'\n[[accounts]]\nid='x'\nrest_url='http://h'\nticker_url='ws://h'\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nadmin_token='a'\n", "accounts"),
        ("[server]\nadmin_token='a'\n[[accounts]]\nid='x'\nbroker='ib'\n", "broker"),
        ("[server]\nadmin_token='a'\n[[accounts]]\nid='x'\n", "rest_url"),
        ("[[accounts]]\nid='x'\nrest_url='http://h'\nticker_url='ws://h'\n", "admin_token"),
        ("not toml [", "not valid TOML"),
        (f"{PAPER}[batches]\nunhedged_parallel='maybe'\n", "batches.unhedged_parallel"),
        (f"{PAPER}[batches]\nlate_watch_s=-1\n", "batches.late_watch_s: must be a number"),
        (f"{PAPER}[ticker]\nstall_timeout_s=0\n", r"ticker.stall_timeout_s: .* > 0"),
        (f"{PAPER}[ticker]\nreconcile_interval_s=5\n", "reconcile_interval_s: must be at least 15"),
        (f"{PAPER}[ticker]\nreconnect_initial_s=5\nreconnect_max_s=1\n", "reconnect_max_s"),
        (f"{PAPER}[ticker]\nstall_s=5\n", "ticker.stall_s: unknown key"),
        (f"{PAPER}[positions]\nmax_rate_hz=0\n", "positions.max_rate_hz: must be a number"),
        (f"{PAPER}[positions]\nrate=1\n", "positions.rate: unknown key"),
        (f"{PAPER}[retention]\ndays=0\n", "retention.days: must be a whole number >= 1"),
        (f"{PAPER}[retention]\nprune_at='3am'\n", "retention.prune_at: must be a time"),
        (f"{PAPER}[retention]\nkeep=1\n", "retention.keep: unknown key"),
        (f"{PAPER}[retention]\nsnapshot_finished_orders=50\nbook_finished_orders=10\n",
         "retention.book_finished_orders: must be at least"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(str(path), environ={})


def test_batches_and_ticker_tables(tmp_path: Path) -> None:
    path = tmp_path / "orderdesk.toml"
    path.write_text(PAPER)
    default = load_settings(str(path), environ={})
    assert default.unhedged_parallel == "hedge_first" and default.ticker.given() == {}
    assert default.late_watch_s == 300.0
    path.write_text(PAPER + "[batches]\nunhedged_parallel='refuse'\nlate_watch_s=600\n[ticker]\n"
                    "stall_timeout_s=8\nreconnect_initial_s=1\nreconcile_interval_s=30\n")
    settings = load_settings(str(path), environ={})
    assert (settings.unhedged_parallel, settings.late_watch_s) == ("refuse", 600.0)
    assert settings.ticker.given() == {"stall_timeout_s": 8.0, "reconnect_initial_s": 1.0,
                                       "reconcile_interval_s": 30.0}


BASE = "[server]\nadmin_token='admin'\n[venue]\n"


@pytest.mark.parametrize(
    ("accounts", "environ", "message"),
    [
        ("[[accounts]]\nid='a'\ntokens=['admin']\n", {}, "also server.admin_token"),
        ("[[accounts]]\nid='a'\ntokens=['t']\n[[accounts]]\nid='b'\ntokens=['t']\n", {},
         "every token must be unique"),
        ("[[accounts]]\nid='a'\nwebhooks=[{secret_env='S'}]\n", {"S": "x"}, r"webhooks\[0\].url"),
        ("[[accounts]]\nid='a'\nwebhooks=[{url='http://h/x', secret_env='S'}]\n", {},
         "secret_env"),
        ("[[accounts]]\nid='k'\nbroker='kite'\napi_key_env='K'\naccess_token_env='T'\n", {},
         "K is not set"),
        ("[[accounts]]\nid='a'\n", {"ORDERDESK_METRICS_TOKEN": "admin"},
         "metrics_token: must not be the admin token"),
        ("[[accounts]]\nid='a'\ntokens=['m']\n", {"ORDERDESK_METRICS_TOKEN": "m"},
         "also server.metrics_token"),
    ],
)
def test_conflicts_and_missing_values_are_refused(
    tmp_path: Path, accounts: str, environ: dict, message: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(BASE + accounts)
    with pytest.raises(ConfigError, match=message):
        load_settings(str(path), environ=environ)


def test_metrics_token_and_bind(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    server = "[server]\nadmin_token='admin'\nmetrics_token='scrape'\n"
    path.write_text(server + "metrics_bind='127.0.0.1:9100'\n[venue]\n[[accounts]]\nid='a'\n")
    settings = load_settings(str(path), environ={})
    assert (settings.metrics_token, settings.metrics_bind) == ("scrape", "127.0.0.1:9100")
    assert "scrape" not in repr(settings)
    path.write_text(server + "metrics_bind='9100'\n[venue]\n[[accounts]]\nid='a'\n")
    with pytest.raises(ConfigError, match='server.metrics_bind: must be "HOST:PORT"'):
        load_settings(str(path), environ={})


def test_log_lines_never_carry_query_secrets() -> None:
    import logging

    from web.middleware import RedactingFilter

    record = logging.LogRecord("trio-websocket", logging.DEBUG, __file__, 1,
                               "Connecting to %s", ("ws://h/?api_key=p&access_token=s3cret",),
                               None)
    RedactingFilter().filter(record)
    assert "s3cret" not in record.getMessage() and "access_token=***" in record.getMessage()


def test_a_standalone_venue_url_replaces_the_embedded_venue(tmp_path: Path) -> None:
    """ORDERDESK_VENUE_URL (the Procfile's `web` sets it): paper accounts without URLs of their
    own trade on that `orderdesk venue`, and none is embedded, even with a [venue] table."""
    env = {"ORDERDESK_VAR": str(tmp_path / "var"), "ORDERDESK_VENUE_URL": "http://127.0.0.1:8766/"}
    settings = load_settings(None, environ=env)
    assert settings.venue is None
    [primary] = settings.accounts
    assert (primary.rest_url, primary.ticker_url) == ("http://127.0.0.1:8766", "ws://127.0.0.1:8766/")

    path = tmp_path / "orderdesk.toml"
    path.write_text("""
[server]
admin_token = "admin-secret"
[venue]
bind = "127.0.0.1:0"
[[accounts]]
id = "a"
[[accounts]]
id = "b"
rest_url = "http://127.0.0.1:9999"
ticker_url = "ws://127.0.0.1:9999/"
""")
    settings = load_settings(str(path), environ={"ORDERDESK_VENUE_URL": "https://venue.example"})
    assert settings.venue is None
    assert [(a.rest_url, a.ticker_url) for a in settings.accounts] == [
        ("https://venue.example", "wss://venue.example/"),
        ("http://127.0.0.1:9999", "ws://127.0.0.1:9999/"),  # its own URLs win
    ]
    with pytest.raises(ConfigError, match="ORDERDESK_VENUE_URL: must be the http:// URL"):
        load_settings(str(path), environ={"ORDERDESK_VENUE_URL": "127.0.0.1:8766"})


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", "{var}/venue.json"),  # the default: a file of the venue's own under var/
        ("state = 'memory'", None),
        ("state = 'elsewhere/paper.json'", "elsewhere/paper.json"),
    ],
)
def test_venue_state_file(tmp_path: Path, line: str, expected: str | None) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"{BASE}{line}\n[[accounts]]\nid='a'\ntokens=['t']\n")
    var = tmp_path / "var"
    settings = load_settings(str(path), environ={"ORDERDESK_VAR": str(var)})
    assert settings.venue is not None
    assert settings.venue.state_file == (expected and expected.format(var=var))
    embedded = load_settings(None, environ={"ORDERDESK_VAR": str(var)})
    assert embedded.venue is not None and embedded.venue.state_file == f"{var}/venue.json"


def test_a_venue_state_that_is_not_a_path_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"{BASE}state = 5\n[[accounts]]\nid='a'\ntokens=['t']\n")
    with pytest.raises(ConfigError, match=r'venue.state: a file path or "memory"'):
        load_settings(str(path), environ={})


@pytest.mark.parametrize(("line", "expected"), [("", 1.0), ("tick_interval_s = 0.25", 0.25)])
def test_venue_tick_interval(tmp_path: Path, line: str, expected: float) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"{BASE}{line}\n[[accounts]]\nid='a'\ntokens=['t']\n")
    settings = load_settings(str(path), environ={"ORDERDESK_VAR": str(tmp_path / "var")})
    assert settings.venue is not None and settings.venue.tick_interval_s == expected


def test_a_venue_tick_interval_of_zero_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"{BASE}tick_interval_s = 0\n[[accounts]]\nid='a'\ntokens=['t']\n")
    with pytest.raises(ConfigError, match=r"venue.tick_interval_s: must be a number of seconds"):
        load_settings(str(path), environ={})


_OVERRIDES = {
    "ORDERDESK_BIND": ("bind", "127.0.0.1:9555"),
    "ORDERDESK_ADMIN_TOKEN": ("admin_token", "admin-from-env"),
    "ORDERDESK_METRICS_TOKEN": ("metrics_token", "metrics-from-env"),
    "DATABASE_URL": ("database_url", "postgresql://postgres@127.0.0.1/from-env"),
}


@pytest.mark.parametrize("with_file", [False, True], ids=["no-file", "file"])
@pytest.mark.parametrize("variable", sorted(_OVERRIDES))
def test_each_environment_override_applies_with_and_without_a_file(
    tmp_path: Path, variable: str, with_file: bool
) -> None:
    path = tmp_path / "orderdesk.toml"
    path.write_text(
        '[server]\nbind = "127.0.0.1:9000"\nadmin_token = "admin-secret"\n'
        'metrics_token = "metrics-secret"\n[database]\nurl = "sqlite:///x.db"\n'
        '[venue]\nbind = "127.0.0.1:0"\n[[accounts]]\nid = "primary"\nbroker = "paper"\n'
        'tokens = ["primary-secret"]\n'
    )
    field, value = _OVERRIDES[variable]
    env = {"ORDERDESK_VAR": str(tmp_path / "var")}
    before = load_settings(str(path) if with_file else None, environ=env)
    after = load_settings(str(path) if with_file else None, environ={**env, variable: value})
    assert getattr(before, field) != value
    assert getattr(after, field) == value
    if field == "bind" and not with_file:  # the embedded origin follows the bind
        assert after.allowed_origins == (f"http://{value}",)


def test_positions_rate(tmp_path: Path) -> None:
    path = tmp_path / "orderdesk.toml"
    path.write_text(PAPER)
    assert load_settings(str(path), environ={}).positions_max_rate_hz == 4.0
    path.write_text(PAPER + "[positions]\nmax_rate_hz = 2\n")
    assert load_settings(str(path), environ={}).positions_max_rate_hz == 2.0


def test_retention(tmp_path: Path) -> None:
    path = tmp_path / "orderdesk.toml"
    path.write_text(PAPER + "[retention]\ndays = 3\nprune_at = 02:15:00\n"
                    "snapshot_finished_orders = 50\n")
    retention = load_settings(str(path), environ={}).retention
    assert (retention.days, retention.prune_at, retention.snapshot_finished_orders,
            retention.book_finished_orders) == (3, dt.time(2, 15), 50, 1000)
