"""A whole orderdesk service in the test's process: `open_service` from a temp TOML.

Paper venue embedded on port 0 (rate limit off), SQLite under tmp_path, two paper accounts with
tokens, the web front on 127.0.0.1:0.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from supervision.service import Running, open_service
from supervision.settings import load_settings

ADMIN = "admin-secret"
TOKENS = {"primary": "primary-secret", "secondary": "secondary-secret"}

CONFIG = """
[server]
bind = "127.0.0.1:0"
admin_token = "{admin}"

[database]
url = "{database}"

[venue]
bind = "127.0.0.1:0"
rate_limit_per_s = 0

[[accounts]]
id = "primary"
broker = "paper"
tokens = [{{ name = "primary-desk", token = "{primary}" }}]

[[accounts]]
id = "secondary"
broker = "paper"
tokens = [{{ name = "secondary-desk", token = "{secondary}" }}]
"""


def write_config(tmp_path: Path, database: str | None = None) -> Path:
    path = tmp_path / "orderdesk.toml"
    database = database or f"sqlite:///{tmp_path}/od.db"
    path.write_text(CONFIG.format(admin=ADMIN, database=database, **TOKENS))
    return path


@asynccontextmanager
async def open_test_service(tmp_path: Path, **options: Any) -> AsyncIterator[Running]:
    settings = load_settings(str(write_config(tmp_path)), environ={})
    async with open_service(settings, **options) as running:
        yield running


def api(running: Running, token: str | None = TOKENS["primary"]) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=f"http://{running.web_bind}", headers=headers, timeout=30)


def venue_control(running: Running) -> httpx.AsyncClient:
    assert running.venue is not None
    return httpx.AsyncClient(base_url=running.venue.rest_url, timeout=10)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Running]:
    async with open_test_service(tmp_path) as running:
        yield running
