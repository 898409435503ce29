"""A real web stack in the test's nursery: paper venue, SQLite store, one actor per account,
the Quart-Trio app on 127.0.0.1:0, plus helpers for httpx and trio-websocket clients.

`open_web_stack(...)` is the async context manager behind the `web_stack` fixture; tests that
need other settings (a tiny subscriber queue, an injected ticket clock) call it themselves.
Leaving it shuts the web front down gracefully (sockets get 1001) and stops everything.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio_asyncio
import trio_websocket
from quart import Blueprint

from actors.account import AccountActor, ActorConfig
from actors.errors import CoordinatorError, MalformedRequest
from actors.health import HealthRegistry
from actors.requests import body_hash
from actors.settings import AccountSettings, ClientToken
from brokers.kite import KiteBroker, KiteSettings
from brokers.paper import VenueAddress
from store import open_store
from tests.fixtures_venue import kite_headers, start_venue
from tests.ws_contract import check_message
from web import Metrics, OrderDeskApp, WebConfig, WebDeps, create_app, serve_web
from web.converter import make_converter
from web.replies import answer, refusal
from web.settings import Settings

ADMIN_TOKEN = "admin-secret"
METRICS_TOKEN = "metrics-secret"  # Prometheus' own: /metrics and nothing else
ALLOWED_ORIGIN = "http://good.example"
TOKENS = {"primary": "primary-secret", "secondary": "secondary-secret"}


async def replied(call: Awaitable[object]) -> tuple[int, Any]:
    """A coordinator call as its route answers it: (status, body), the body without the
    correlation id; so tests that call the coordinator directly assert what a client sees."""
    converter = make_converter()
    try:
        value = await call
    except CoordinatorError as exc:
        return refusal(converter, exc)
    return answer(converter, value)


def typed(body: Any, model: type[Any]) -> tuple[Any, str]:
    """A body as its route hands it to the coordinator: structured by the web front's
    converter (or its shape problems), and its hash as sent."""
    try:
        request = make_converter().structure(body, model)
    except MalformedRequest as exc:
        request = exc
    return request, body_hash(body)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@attrs.frozen
class WebStack:
    venue: VenueAddress
    address: str  # host:port of the web front
    app: OrderDeskApp
    actors: dict[str, AccountActor]
    settings: Settings
    health: HealthRegistry
    metrics: Metrics
    shutdown: trio.Event
    stopped: trio.Event

    @property
    def base_url(self) -> str:
        return f"http://{self.address}"

    def ws_url(self, account: str, query: str = "") -> str:
        return f"ws://{self.address}/ws/orders/{account}" + (f"?{query}" if query else "")

    def http(self, token: str | None = None) -> httpx.AsyncClient:
        headers = bearer(token) if token else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=10.0)

    async def connect(
        self,
        nursery: trio.Nursery,
        account: str = "primary",
        *,
        token: str | None = "account",
        query: str = "",
        headers: list[tuple[str, str]] | None = None,
        **kwargs: Any,
    ) -> trio_websocket.WebSocketConnection:
        """A websocket client; `token="account"` means the account's own token."""
        extra = list(headers or [])
        if token == "account":
            token = TOKENS.get(account, "x")
        if token:
            extra.append(("Authorization", f"Bearer {token}"))
        return await trio_websocket.connect_websocket_url(
            nursery,
            self.ws_url(account, query),
            extra_headers=[(k.encode(), v.encode()) for k, v in extra],
            **kwargs,
        )


async def place_market(
    venue: VenueAddress, account: str = "primary", *, symbol: str = "SBIN", tag: str | None = None
) -> str:
    """A MARKET order placed directly at the venue (as another client of the broker would)."""
    form = {
        "tradingsymbol": symbol,
        "exchange": "NSE",
        "transaction_type": "BUY",
        "order_type": "MARKET",
        "quantity": "1",
        "product": "MIS",
        "validity": "DAY",
        "market_protection": "-1",
    }
    if tag:
        form["tag"] = tag
    async with httpx.AsyncClient(
        base_url=venue.rest_url, headers=kite_headers(account), timeout=10.0
    ) as client:
        response = await client.post("/orders/regular", data=form)
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["order_id"])


def assert_error_shape(response: httpx.Response) -> dict[str, Any]:
    """The body of an error response, asserting our contract: JSON with `error`, `message`,
    the request's `correlation_id`, and well-formed `fields` when there are any."""
    assert response.headers.get("content-type", "").startswith("application/json"), response.text
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert body.get("correlation_id") == response.headers.get("X-Correlation-ID"), body
    for field in body.get("fields", []):
        assert set(field) == {"path", "rule", "message"}, body
    return body


def frames_to_messages(frame: str | bytes) -> list[dict[str, Any]]:
    """One frame holds one message or, for a lagging subscriber, a JSON array of them; each is
    checked against the documented protocol."""
    decoded = json.loads(frame)
    messages = decoded if isinstance(decoded, list) else [decoded]
    for message in messages:
        check_message(message)
    return messages


class Reader:
    """Reads a websocket, flattening coalesced frames, keeping every message in order."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.frames = 0
        self._pending: list[dict[str, Any]] = []

    async def next(self) -> dict[str, Any]:
        while not self._pending:
            self._pending = frames_to_messages(await self.ws.get_message())
            self.frames += 1
        message = self._pending.pop(0)
        self.messages.append(message)
        return message

    async def until(self, predicate: Any) -> dict[str, Any]:
        while True:
            message = await self.next()
            if predicate(message):
                return message

    async def orders_until_seq(self, seq: int) -> list[dict[str, Any]]:
        """Order messages up to and including `seq` (status messages skipped)."""
        got = []
        while not got or got[-1]["seq"] < seq:
            message = await self.next()
            if message["type"] == "order":
                got.append(message)
        return got


async def wait_upstream(actor: AccountActor, state: str) -> None:
    """Wait (on the actor's own status broadcasts, no polling) until its upstream is `state`."""
    sub = actor.subscribe()
    try:
        if actor.upstream.state == state:
            return
        async for message in sub.receive:
            if message.startswith('{"type":"status"') and json.loads(message)["upstream"] == state:
                return
    finally:
        actor.unsubscribe(sub)


async def _run_actor(actor: AccountActor, *, task_status: trio.TaskStatus[None]) -> None:
    await actor.run(task_status=task_status)


@asynccontextmanager
async def open_web_stack(
    tmp_path: Path,
    *,
    accounts: tuple[str, ...] = ("primary", "secondary"),
    actor_config: ActorConfig = ActorConfig(),
    web_config: WebConfig = WebConfig(),
    store_url: str | None = None,
    wait_connected: bool = True,
    blueprints: tuple[Blueprint, ...] = (),
) -> AsyncIterator[WebStack]:
    url = store_url or f"sqlite:///{tmp_path}/web.db"
    async with trio_asyncio.open_loop(), open_store(url) as store, trio.open_nursery() as nursery:
        venue = await start_venue(nursery, accounts=accounts)
        settings = Settings(
            bind="127.0.0.1:0",
            admin_token=ADMIN_TOKEN,
            metrics_token=METRICS_TOKEN,
            allowed_origins=(ALLOWED_ORIGIN,),
            database_url=url,
            accounts=tuple(
                AccountSettings(
                    id=a,
                    broker="paper",
                    tokens=(ClientToken(f"{a}-client", TOKENS[a]),),
                    access_token=f"paper-{a}",
                    rest_url=venue.rest_url,
                    ticker_url=venue.ticker_url,
                )
                for a in accounts
            ),
        )
        health = HealthRegistry()
        metrics = Metrics()
        actors: dict[str, AccountActor] = {}
        brokers = []
        for a in accounts:
            broker = KiteBroker(
                KiteSettings(
                    api_key="paper",
                    access_token=f"paper-{a}",
                    rest_url=venue.rest_url,
                    ticker_url=venue.ticker_url,
                )
            )
            brokers.append(broker)
            entry = health.register(f"account:{a}", "actor")
            actors[a] = AccountActor(
                a, broker, store, actor_config, health=entry, on_update=metrics.on_update
            )
            await nursery.start(_run_actor, actors[a])
            entry.set_state("running")
        deps = WebDeps(settings, actors, store, health, metrics, web_config)
        app = create_app(deps, blueprints=blueprints)
        shutdown, stopped = trio.Event(), trio.Event()

        async def serve(*, task_status: trio.TaskStatus[str]) -> None:
            try:
                await serve_web(app, "127.0.0.1:0", shutdown_trigger=shutdown.wait,
                                task_status=task_status)
            finally:
                stopped.set()

        address = await nursery.start(serve)
        stack = WebStack(venue, address, app, actors, settings, health, metrics, shutdown, stopped)
        if wait_connected:
            with trio.fail_after(10):
                for actor in actors.values():
                    await wait_upstream(actor, "connected")
        try:
            yield stack
        finally:
            shutdown.set()
            with trio.move_on_after(5):
                await stopped.wait()
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                for broker in brokers:
                    await broker.aclose()


@asynccontextmanager
async def open_bare_app(
    actors: dict[str, Any],
    store: Any,
    *,
    web_config: WebConfig = WebConfig(),
    blueprints: tuple[Blueprint, ...] = (),
) -> AsyncIterator[WebStack]:
    """The web front alone, over stand-in actors and store (for failure cases)."""
    settings = Settings(
        bind="127.0.0.1:0",
        admin_token=ADMIN_TOKEN,
        metrics_token=METRICS_TOKEN,
        allowed_origins=(ALLOWED_ORIGIN,),
        accounts=tuple(
            AccountSettings(id=a, broker="paper", tokens=(ClientToken(f"{a}-client", TOKENS[a]),))
            for a in actors
        ),
    )
    health, metrics = HealthRegistry(), Metrics()
    app = create_app(
        WebDeps(settings, actors, store, health, metrics, web_config), blueprints=blueprints
    )
    shutdown, stopped = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:

        async def serve(*, task_status: trio.TaskStatus[str]) -> None:
            try:
                await serve_web(app, "127.0.0.1:0", shutdown_trigger=shutdown.wait,
                                task_status=task_status)
            finally:
                stopped.set()

        address = await nursery.start(serve)
        venue = VenueAddress("127.0.0.1", 9)
        yield WebStack(venue, address, app, actors, settings, health, metrics, shutdown, stopped)
        shutdown.set()
        with trio.move_on_after(5):
            await stopped.wait()
        nursery.cancel_scope.cancel()


@pytest.fixture
async def web_stack(tmp_path: Path) -> AsyncIterator[WebStack]:
    async with open_web_stack(tmp_path) as stack:
        yield stack


__all__ = [
    "ADMIN_TOKEN",
    "ALLOWED_ORIGIN",
    "TOKENS",
    "Reader",
    "WebStack",
    "assert_error_shape",
    "bearer",
    "open_bare_app",
    "open_web_stack",
    "place_market",
    "wait_upstream",
]
