"""Fixtures for [cluster] tests: Redis settings with a key prefix of the test's own (other runs
share the Redis), the `[cluster]` TOML of a node, a TCP proxy in front of Redis that a test
can freeze (a partition: connections stay open, nothing passes), and for nodes run as processes
(`orderdesk serve`): their config, their view of account `primary`, and a websocket subscriber
of it that resumes on any node (`Follower`)."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import coredis
import httpx
import pytest
import trio
import trio_websocket
from prometheus_client.parser import text_string_to_metric_families

from store import open_store
from store.postgres import PostgresStore
from tests.fixtures_cli import free_port
from tests.fixtures_service import ADMIN, METRICS, TOKENS, write_config
from web.settings import ClusterSettings

REDIS_URL = "redis://127.0.0.1:6379/0"
#: The forwarding secret of nodes run as processes (ORDERDESK_CLUSTER_SECRET in their env).
CLUSTER_SECRET = "test-cluster-secret-0123456789"


@pytest.fixture
async def key_prefix() -> AsyncIterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted at the end."""
    prefix = f"t{secrets.token_hex(6)}"
    yield prefix
    client = coredis.Redis.from_url(REDIS_URL, decode_responses=True)
    async with client:
        keys = [k async for k in client.scan_iter(match=f"{{{prefix}:*")]
        if keys:
            await client.delete(keys)


@asynccontextmanager
async def postgres_node(url: str) -> AsyncIterator[PostgresStore]:
    """One node's store: a Postgres store of its own on `url` (two of them: two nodes)."""
    async with open_store(url) as store:
        assert isinstance(store, PostgresStore)
        yield store


def cluster_settings(prefix: str, node: str, *, url: str = REDIS_URL, lease_s: float = 1.5,
                     renew_s: float = 0.3, margin_s: float = 0.3,
                     session_check_s: float = 1.0, advertised: str = "",
                     warm_standby: bool = False) -> ClusterSettings:
    return ClusterSettings(redis_url=url, node_id=node, advertised=advertised or f"http://{node}",
                           lease_s=lease_s, renew_s=renew_s, margin_s=margin_s,
                           key_prefix=prefix, session_check_s=session_check_s,
                           warm_standby=warm_standby)


def cluster_toml(settings: ClusterSettings) -> str:
    fields = attrs.asdict(settings)
    fields.pop("token_key")  # the environment's (ORDERDESK_TOKEN_KEY), not the file's
    fields.pop("secret")  # the environment's too (ORDERDESK_CLUSTER_SECRET)
    return "[cluster]\n" + "".join(
        f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}\n".replace("'", '"')
        for k, v in fields.items())


@attrs.define(eq=False)
class FreezableProxy:
    """Forwards 127.0.0.1:<port> to Redis; `frozen` (an event cleared) holds every byte;
    `connections` counts the connections it took (a client that reconnects shows here)."""

    port: int = 0
    flowing: trio.Event = attrs.field(factory=trio.Event)
    connections: int = 0

    def freeze(self) -> None:
        self.flowing = trio.Event()

    def thaw(self) -> None:
        self.flowing.set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def _pipe(self, source: trio.SocketStream, sink: trio.SocketStream) -> None:
        while data := await source.receive_some(65536):
            await self.flowing.wait()
            await sink.send_all(data)

    async def _serve(self, client: trio.SocketStream) -> None:
        self.connections += 1
        async with client, await trio.open_tcp_stream("127.0.0.1", 6379) as upstream:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pipe, client, upstream)
                    nursery.start_soon(self._pipe, upstream, client)
            except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass


@asynccontextmanager
async def redis_proxy() -> AsyncIterator[FreezableProxy]:
    proxy = FreezableProxy()
    proxy.thaw()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, proxy._serve, 0,
                                                host="127.0.0.1"))
        proxy.port = listeners[0].socket.getsockname()[1]
        yield proxy
        nursery.cancel_scope.cancel()


#: The lease of nodes run as processes: short, so a takeover after kill -9 takes seconds, yet
#: long enough that (renewed every 0.4 s, less the 0.4 s margin) it always outlasts a broker
#: call's 3 s timeout, which the owner checks before each one.
NODE_LEASE_S = 4.0


def node_config(tmp_path: Path, pg_url: str, prefix: str, name: str, *, limits_toml: str = "",
                **cluster: Any) -> Path:
    """The config of node `name` (its own directory and web port) on `pg_url`."""
    where = tmp_path / name
    where.mkdir(exist_ok=True)
    port = free_port()
    settings = cluster_settings(prefix, name, lease_s=NODE_LEASE_S, renew_s=0.4, margin_s=0.4,
                                advertised=f"http://127.0.0.1:{port}", **cluster)
    config = write_config(where, pg_url, extra_toml=cluster_toml(settings), limits_toml=limits_toml)
    text = config.read_text()  # the [server] bind comes first: a port of its own
    config.write_text(text.replace('bind = "127.0.0.1:0"', f'bind = "127.0.0.1:{port}"', 1))
    return config


def bind_of(config: Path) -> str:
    return config.read_text().split('bind = "', 1)[1].split('"', 1)[0]


def node_client(config: Path, token: str = TOKENS["primary"]) -> httpx.AsyncClient:
    """An HTTP client of the node of `config`, with `token` (primary's own by default)."""
    return httpx.AsyncClient(base_url=f"http://{bind_of(config)}", timeout=120,
                             headers={"Authorization": f"Bearer {token}"})


async def primary_metric(config: Path, name: str) -> float:
    """The node's /metrics sample `name` for account primary (0 when absent)."""
    async with node_client(config, METRICS) as http:
        text = (await http.get("/metrics")).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == name and sample.labels.get("account") == "primary")


async def primary(config: Path) -> dict[str, Any]:
    """Node's view of account primary (status and owner), from its /admin/actors."""
    async with httpx.AsyncClient(base_url=f"http://{bind_of(config)}", timeout=5,
                                 headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        response = await http.get("/admin/actors")
    assert response.status_code == 200, response.text
    return response.json()["accounts"]["primary"]


def owner_is(config: Path) -> Any:
    """A check for `wait_until`: the node of `config` owns account primary."""
    async def check() -> bool:
        return (await primary(config))["owner"]["state"] == "owner"

    return check


@attrs.define(eq=False)
class Follower:
    """A websocket subscriber of `account` (primary) that resumes with `since` on whichever node
    it is pointed at next: every seq it saw, in order (a snapshot counts as its seq)."""

    account: str = "primary"
    token: str = TOKENS["primary"]
    seqs: list[int] = attrs.field(factory=list)
    snapshots: int = 0
    closes: list[int | None] = attrs.field(factory=list)

    @property
    def last(self) -> int | None:
        return self.seqs[-1] if self.seqs else None

    async def follow(self, config: Path) -> None:
        """Read from the node of `config` until the connection ends (resuming after the last
        seq seen, if any)."""
        query = f"access_token={self.token}"
        if self.last is not None:
            query += f"&since={self.last}"
        url = f"ws://{bind_of(config)}/ws/orders/{self.account}?{query}"
        try:
            async with trio_websocket.open_websocket_url(url) as ws:
                while True:
                    text = await ws.get_message()
                    message = json.loads(text)
                    for item in message if isinstance(message, list) else [message]:
                        if item["type"] == "snapshot":
                            self.snapshots += 1
                            self.seqs.append(item["seq"])
                        elif item["type"] == "order":
                            self.seqs.append(item["seq"])
        except trio_websocket.ConnectionClosed as exc:
            self.closes.append(exc.reason.code)
        except (OSError, trio_websocket.HandshakeError):
            self.closes.append(None)

    def gaps_and_repeats(self) -> tuple[list[int], list[int]]:
        """Seqs missing between two seen, and seqs seen again."""
        gaps, repeats = [], []
        for before, after in zip(self.seqs, self.seqs[1:], strict=False):
            if after <= before:
                repeats.append(after)
            gaps += range(before + 1, after)
        return gaps, repeats
