"""[cluster] access tokens shared through Postgres: a token loaded on the owner with
`orderdesk credentials` is kept sealed in the store, and the node that takes the account over
after the owner's `kill -9` trades with it (no `auth_expired`). Without ORDERDESK_TOKEN_KEY a
node refuses a token (it could not share it) with an error that names the variable; a key that
is not a Fernet key is a configuration error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from cryptography.fernet import Fernet

from brokers.paper import VenueAddress
from supervision.config_fields import ConfigError
from supervision.settings import load_settings
from tests.fixtures_cli import cli_env, orderdesk, running_orderdesk
from tests.fixtures_cluster import (
    NODE_LEASE_S,
    bind_of,
    cluster_settings,
    cluster_toml,
    node_config,
    owner_is,
    primary,
)
from tests.fixtures_orders import leg
from tests.fixtures_service import ADMIN, TOKENS, api, open_test_service, write_config
from tests.fixtures_venue import kite_http
from tests.fixtures_waits import wait_until


def trader(config: Path) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://{bind_of(config)}", timeout=30,
                             headers={"Authorization": f"Bearer {TOKENS['primary']}"})


async def upstream_settled(config: Path) -> str | None:
    """The node's upstream state of primary once it is connected or parked."""
    state = (await primary(config))["upstream"]
    return state if state in ("connected", "auth_expired") else None


async def test_the_new_owner_trades_with_the_token_loaded_on_the_old_one(
    tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    env = cli_env(tmp_path, ORDERDESK_VENUE_URL=venue.rest_url,
                  ORDERDESK_TOKEN_KEY=Fernet.generate_key().decode())
    a_config = node_config(tmp_path, pg_url, key_prefix, "a")
    b_config = node_config(tmp_path, pg_url, key_prefix, "b")
    with trio.fail_after(60):
        async with (
            kite_http(venue) as kite,
            running_orderdesk(tmp_path / "a", "serve", "--config", str(a_config), env=env) as a,
            running_orderdesk(tmp_path / "b", "serve", "--config", str(b_config), env=env),
        ):
            assert (await primary(a_config))["owner"]["state"] == "owner"
            # The day's new token: the venue refuses the one both nodes were configured with.
            issued = await kite.post("/_venue/accounts/primary/token")
            assert issued.status_code == 200, issued.text
            token = issued.json()["data"]["access_token"]
            loaded = await orderdesk(tmp_path, "credentials", "primary", "--access-token", token,
                                     "--url", f"http://{bind_of(a_config)}", "--token", ADMIN,
                                     env=env)
            assert loaded.code == 0, loaded.stderr
            async with trader(a_config) as http:
                response = await http.post("/accounts/primary/orders", json=leg())
                assert response.status_code == 200, response.text

            a.kill()
            await a.wait()
            await wait_until(owner_is(b_config), "b to own primary", NODE_LEASE_S + 5)
            assert await wait_until(lambda: upstream_settled(b_config),
                                    "b's upstream") == "connected"
            async with trader(b_config) as http:
                response = await wait_until(lambda: _placed(http), "b to take an order")
                assert response.status_code == 200, response.text


async def _placed(http: httpx.AsyncClient) -> httpx.Response | None:
    """The order's answer, once the takeover's recovery gate (503) is over."""
    response = await http.post("/accounts/primary/orders", json=leg())
    return None if response.status_code == 503 else response


async def test_a_node_without_the_key_refuses_a_token(
    aio_loop: Any, tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    with trio.fail_after(30):
        async with (
            open_test_service(
                tmp_path, database=pg_url, environ={"ORDERDESK_VENUE_URL": venue.rest_url},
                extra_toml=cluster_toml(cluster_settings(key_prefix, "a")),
            ) as running,
            api(running, ADMIN) as http,
        ):
            response = await http.put("/admin/accounts/primary/credentials",
                                      json={"access_token": "paper-primary-9"})
            assert response.status_code == 503, response.text
            assert "ORDERDESK_TOKEN_KEY is not set" in response.json()["message"]


def test_a_token_key_that_is_not_a_fernet_key_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, "postgresql://u@127.0.0.1/db", extra_toml=cluster_toml(
        cluster_settings("p", "a")))
    with pytest.raises(ConfigError, match="ORDERDESK_TOKEN_KEY: not a Fernet key"):
        load_settings(str(config), environ={"ORDERDESK_TOKEN_KEY": "short"})
    key = Fernet.generate_key().decode()
    settings = load_settings(str(config), environ={"ORDERDESK_TOKEN_KEY": key})
    assert settings.cluster is not None and settings.cluster.token_key == key
    assert key not in repr(settings)
