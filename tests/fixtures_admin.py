"""The real service for the admin routes and the CLI (`open_admin_service`: paper venue, SQLite
store, two paper accounts, the web front on 127.0.0.1:0) and the views both tests use."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from actors.account import ActorConfig
from supervision.service import Running
from supervision.upstream_watch import HealthPolicy
from tests.fixtures_service import ADMIN as ADMIN_TOKEN
from tests.fixtures_service import TOKENS, open_test_service
from tests.fixtures_waits import wait_until

__all__ = ["ADMIN_TOKEN", "TOKENS"]


#: An account is ok again this long after its last fault (60 s in production).
RECOVERY_S = 1.0


@asynccontextmanager
async def open_admin_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Running]:
    config = ActorConfig(health=HealthPolicy(recovery_s=RECOVERY_S))
    async with open_test_service(tmp_path, actor_config=config) as running:
        yield running


def admin_http(running: Running, token: str | None = ADMIN_TOKEN) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        base_url=f"http://{running.web_bind}", headers=headers, timeout=10.0
    )


async def admin_tree(running: Running) -> dict[str, Any]:
    """`GET /admin/actors`: the supervision tree and every account's status."""
    async with admin_http(running) as http:
        response = await http.get("/admin/actors")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_tree(
    running: Running, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 15.0
) -> dict[str, Any]:
    """`/admin/actors` (over HTTP: polled) until `predicate(body)` holds."""

    async def matching() -> dict[str, Any] | None:
        body = await admin_tree(running)
        return body if predicate(body) else None

    return await wait_until(matching, "the admin tree", timeout_s)


def upstream_is(account: str, state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: body["accounts"][account]["upstream"] == state


def actor_entry(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(entry for entry in body["actors"] if entry["name"] == name)


async def expire_at_venue(running: Running, account: str) -> None:
    assert running.venue is not None
    async with httpx.AsyncClient(base_url=running.venue.rest_url, timeout=10.0) as venue:
        response = await venue.post(f"/_venue/accounts/{account}/expire")
        assert response.status_code == 200, response.text


async def new_venue_token(running: Running, account: str) -> str:
    assert running.venue is not None
    async with httpx.AsyncClient(base_url=running.venue.rest_url, timeout=10.0) as venue:
        response = await venue.post(f"/_venue/accounts/{account}/token")
        assert response.status_code == 200, response.text
        body = response.json()
    assert body["status"] == "success"
    return str(body["data"]["access_token"])
