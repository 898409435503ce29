"""A whole orderdesk service in the test's process: `open_service` from a temp TOML.

Paper venue embedded on port 0 (order and read limits off, state in memory), SQLite under
tmp_path, two paper accounts with tokens, the web front on 127.0.0.1:0. Extra TOML lines go into
`[server]` (`server_toml`), `[database]` (`database_toml`), `[venue]` (`venue_toml`: `funds =
500000`, say), `[batches]` (`batches_toml`), `[limits]` (`limits_toml`) or an account's table
(`account_toml={"primary": 'webhooks = [...]'}`), top-level tables after the accounts
(`extra_toml`: `[calendar]`); `environ` is what `load_settings` reads (secret_env, ...); other
keywords go to `open_service`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from supervision.service import Running, open_service
from supervision.settings import load_settings
from tests.fixtures_web import wait_upstream

ADMIN = "admin-secret"
METRICS = "metrics-secret"  # Prometheus' own token: /metrics and nothing else
TOKENS = {"primary": "primary-secret", "secondary": "secondary-secret"}

CONFIG = """
[server]
bind = "127.0.0.1:0"
admin_token = "{admin}"
metrics_token = "{metrics}"
{server_extra}

[database]
url = "{database}"
{database_extra}

[batches]
{batches_extra}

[venue]
bind = "127.0.0.1:0"
rate_limit_per_s = 0
state = "memory"
{venue_extra}

[limits]
{limits_extra}

[[accounts]]
id = "primary"
broker = "paper"
tokens = [{{ name = "primary-desk", token = "{primary}" }}]
{primary_extra}

[[accounts]]
id = "secondary"
broker = "paper"
tokens = [{{ name = "secondary-desk", token = "{secondary}" }}]
{secondary_extra}
{extra_toml}
"""


def write_config(
    tmp_path: Path,
    database: str | None = None,
    *,
    server_toml: str = "",
    venue_toml: str = "",
    account_toml: Mapping[str, str] | None = None,
    extra_toml: str = "",
    batches_toml: str = "",
    limits_toml: str = "",
    database_toml: str = "",
) -> Path:
    # The venue's limits beyond the per-second one are Kite's by default; off here unless a
    # test sets them (tests read the venue directly, as the same account).
    for key in ("rate_limit_per_minute", "rate_limit_per_day", "read_limit_per_s"):
        if key not in venue_toml:
            venue_toml += f"\n{key} = 0"
    path = tmp_path / "orderdesk.toml"
    database = database or f"sqlite:///{tmp_path}/od.db"
    extra = {f"{a}_extra": (account_toml or {}).get(a, "") for a in TOKENS}
    path.write_text(CONFIG.format(
        admin=ADMIN, metrics=METRICS, database=database, server_extra=server_toml,
        database_extra=database_toml,
        venue_extra=venue_toml, batches_extra=batches_toml, limits_extra=limits_toml,
        extra_toml=extra_toml, **extra, **TOKENS
    ))
    return path


@asynccontextmanager
async def open_test_service(
    tmp_path: Path,
    *,
    database: str | None = None,
    server_toml: str = "",
    venue_toml: str = "",
    account_toml: Mapping[str, str] | None = None,
    batches_toml: str = "",
    limits_toml: str = "",
    environ: Mapping[str, str] | None = None,
    extra_toml: str = "",
    database_toml: str = "",
    **options: Any,
) -> AsyncIterator[Running]:
    path = write_config(tmp_path, database, server_toml=server_toml, venue_toml=venue_toml,
                        account_toml=account_toml, batches_toml=batches_toml,
                        limits_toml=limits_toml, extra_toml=extra_toml,
                        database_toml=database_toml)
    settings = load_settings(str(path), environ=environ or {})
    async with open_service(settings, **options) as running:
        yield running


def api(running: Running, token: str | None = TOKENS["primary"]) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=f"http://{running.web_bind}", headers=headers, timeout=30)


async def scrape_metrics(running: Running) -> str:
    """`/metrics` as Prometheus reads it, with the metrics token."""
    async with api(running, METRICS) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    return response.text


def venue_control(running: Running) -> httpx.AsyncClient:
    assert running.venue is not None
    return httpx.AsyncClient(base_url=running.venue.rest_url, timeout=10)


async def expire_token(running: Running, account: str = "primary") -> None:
    """The venue expires the account's access token; back once its actor is `auth_expired`."""
    async with venue_control(running) as venue:
        expired = await venue.post(f"/_venue/accounts/{account}/expire")
        assert expired.status_code == 200, expired.text
    await wait_upstream(running.actors[account], "auth_expired")


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Running]:
    async with open_test_service(tmp_path) as running:
        yield running
