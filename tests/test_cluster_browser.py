"""[cluster] websocket tickets and browser sessions shared through Redis, in one process: two
nodes (two services) on one Postgres, one Redis and one paper venue. Node "a" starts first and
owns the accounts; the browser signs in or asks its ticket on "b" (where it was before "b"
stepped down, say) and opens its socket on "a".

- A ticket issued on b opens one socket on a; the second use is refused on either node.
- A ticket past its lifetime is refused (Redis expired it).
- b's session cookie opens a's socket; sign-out on b closes it (4401 SESSION_ENDED) within a
  session check, a bearer socket beside it streams on; a token rotation on b does the same,
  and a refuses the old value within `session_check_s` (the rotation is kept in the store).
- Sessions per identity are bounded: past `max_sessions` the oldest ends.
- Redis not answering: ticket, sign-in and token rotation answer 503 naming Redis (the token
  is not rotated), a ticket handshake is refused 503 before the upgrade, and the socket already
  open keeps streaming.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import coredis
import httpx
import pytest
import trio
import trio_websocket

from brokers.paper import VenueAddress
from supervision.service import Running
from tests.fixtures_cluster import REDIS_URL, cluster_settings, cluster_toml, redis_proxy
from tests.fixtures_service import ADMIN, TOKENS, api, open_test_service
from tests.fixtures_venue import kite_http, order_form, place
from tests.fixtures_waits import wait_until
from tests.fixtures_web import Reader
from web import WebConfig
from web.callers import TICKET_REFUSED
from web.sessions import SESSION_ENDED

COOKIE = "orderdesk_session"
#: Checks that a session still exists, on every node, this often: what bounds how long a
#: socket on another node outlives a sign-out.
CHECK_S = 0.2


def node(tmp_path: Path, pg_url: str, venue: VenueAddress, prefix: str, name: str, *,
         url: str = REDIS_URL, web_config: WebConfig | None = None, **cluster: Any) -> Any:
    (tmp_path / name).mkdir(exist_ok=True)
    options = {} if web_config is None else {"web_config": web_config}
    return open_test_service(
        tmp_path / name, database=pg_url, environ={"ORDERDESK_VENUE_URL": venue.rest_url},
        extra_toml=cluster_toml(cluster_settings(prefix, name, url=url, session_check_s=CHECK_S,
                                                 **cluster)),
        **options,
    )


@asynccontextmanager
async def two_nodes(tmp_path: Path, pg_url: str, venue: VenueAddress, prefix: str,
                    **options: Any) -> AsyncIterator[tuple[Running, Running]]:
    async with (
        node(tmp_path, pg_url, venue, prefix, "a", **options) as a,
        node(tmp_path, pg_url, venue, prefix, "b", **options) as b,
    ):
        assert a.cluster is not None and a.cluster.owns("primary")
        yield a, b


async def sign_in(running: Running, token: str = TOKENS["primary"]) -> str:
    async with api(running, token) as http:
        response = await http.post("/session")
    assert response.status_code == 204, response.text
    return str(response.cookies[COOKIE])


def cookie_headers(running: Running, session: str) -> list[tuple[str, str]]:
    """The cookie as the page sends it, from the node's own origin (as behind one address)."""
    return [("Cookie", f"{COOKIE}={session}"), ("Origin", f"http://{running.web_bind}")]


async def ticket_of(running: Running, headers: dict[str, str] | None = None,
                    token: str | None = TOKENS["primary"]) -> httpx.Response:
    async with api(running, token) as http:
        return await http.post("/accounts/primary/ws-ticket", headers=headers or {})


async def connect(nursery: trio.Nursery, running: Running, *, query: str = "",
                  headers: list[tuple[str, str]] | None = None) -> Any:
    url = f"ws://{running.web_bind}/ws/orders/primary" + (f"?{query}" if query else "")
    return await trio_websocket.connect_websocket_url(
        nursery, url, extra_headers=[(k.encode(), v.encode()) for k, v in headers or []])


async def closed_with(ws: Any) -> trio_websocket.CloseReason:
    with pytest.raises(trio_websocket.ConnectionClosed) as info:
        while True:
            await ws.get_message()
    return info.value.reason


async def streams(ws: Any) -> None:
    await ws.send_message("ping")
    await Reader(ws).until(lambda m: m["type"] == "pong")


async def test_a_ticket_issued_on_one_node_opens_one_socket_on_another(
    aio_loop: Any, tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    with trio.fail_after(40):
        async with (
            two_nodes(tmp_path, pg_url, venue, key_prefix) as (a, b),
            trio.open_nursery() as nursery,
        ):
            issued = await ticket_of(b)
            assert issued.status_code == 200, issued.text
            ticket = issued.json()["ticket"]
            ws = await connect(nursery, a, query=f"ticket={ticket}")
            assert (await Reader(ws).next())["type"] == "snapshot"
            for again_on in (a, b):
                again = await connect(nursery, again_on, query=f"ticket={ticket}")
                reason = await closed_with(again)
                assert (reason.code, reason.reason) == (4401, TICKET_REFUSED)
            await streams(ws)
            nursery.cancel_scope.cancel()


async def test_an_expired_ticket_is_refused(
    aio_loop: Any, tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    with trio.fail_after(40):
        async with (
            node(tmp_path, pg_url, venue, key_prefix, "a",
                 web_config=WebConfig(ticket_ttl_s=0.3)) as a,
            coredis.Redis.from_url(REDIS_URL, decode_responses=True) as redis,
            trio.open_nursery() as nursery,
        ):
            issued = await ticket_of(a)
            assert issued.status_code == 200, issued.text
            ticket = issued.json()["ticket"]
            key = f"{{{key_prefix}:ticket:{ticket}}}"
            await wait_until(lambda: _gone(redis, key), "Redis to expire the ticket")
            late = await connect(nursery, a, query=f"ticket={ticket}")
            reason = await closed_with(late)
            assert (reason.code, reason.reason) == (4401, TICKET_REFUSED)
            nursery.cancel_scope.cancel()


async def _gone(redis: Any, key: str) -> bool:
    return not await redis.exists([key])


async def test_a_session_from_one_node_works_on_another_and_ends_everywhere(
    aio_loop: Any, tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    with trio.fail_after(40):
        async with (
            two_nodes(tmp_path, pg_url, venue, key_prefix) as (a, b),
            trio.open_nursery() as nursery,
        ):
            session = await sign_in(b)
            direct = await connect(nursery, a, headers=cookie_headers(a, session))
            asked = await ticket_of(a, dict(cookie_headers(a, session)), token=None)
            assert asked.status_code == 200, asked.text
            by_ticket = await connect(nursery, a, query=f"ticket={asked.json()['ticket']}")
            by_token = await connect(nursery, a, headers=[
                ("Authorization", f"Bearer {TOKENS['primary']}")])
            for ws in (direct, by_ticket, by_token):
                assert (await Reader(ws).next())["type"] == "snapshot"

            async with api(b) as http:
                out = await http.delete("/session", headers=dict(cookie_headers(b, session)))
            assert out.status_code == 204, out.text
            for ws in (direct, by_ticket):
                reason = await closed_with(ws)
                assert (reason.code, reason.reason) == (4401, SESSION_ENDED)
            await streams(by_token)
            again = await connect(nursery, a, headers=cookie_headers(a, session))
            assert (await closed_with(again)).code == 4401
            nursery.cancel_scope.cancel()


async def test_a_token_rotation_on_one_node_ends_its_sessions_on_another(
    aio_loop: Any, tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    with trio.fail_after(40):
        async with (
            two_nodes(tmp_path, pg_url, venue, key_prefix) as (a, b),
            trio.open_nursery() as nursery,
        ):
            mine = await connect(nursery, a, headers=cookie_headers(a, await sign_in(a)))
            other = await sign_in(a, TOKENS["secondary"])
            url = f"ws://{a.web_bind}/ws/orders/secondary"
            theirs = await trio_websocket.connect_websocket_url(nursery, url, extra_headers=[
                (k.encode(), v.encode()) for k, v in cookie_headers(a, other)])
            for ws in (mine, theirs):
                assert (await Reader(ws).next())["type"] == "snapshot"
            async with api(b, ADMIN) as admin:
                rotated = await admin.put("/admin/accounts/primary/tokens/primary-desk")
            assert rotated.status_code == 200, rotated.text
            assert rotated.json()["sessions_ended"] == 1
            reason = await closed_with(mine)
            assert (reason.code, reason.reason) == (4401, SESSION_ENDED)
            await streams(theirs)

            async def old_value_refused() -> bool:  # a reads the rotation off the store
                async with api(a) as http:
                    return (await http.post("/session")).status_code == 401

            await wait_until(old_value_refused, "a to refuse the rotated-away value", 10)
            await sign_in(a, rotated.json()["token"])  # and to take the new one
            nursery.cancel_scope.cancel()


async def test_sessions_per_identity_are_bounded_and_the_oldest_ends(
    aio_loop: Any, tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    with trio.fail_after(40):
        async with two_nodes(tmp_path, pg_url, venue, key_prefix,
                             web_config=WebConfig(max_sessions=2)) as (a, b):
            first, second = await sign_in(a), await sign_in(b)
            other = await sign_in(b, TOKENS["secondary"])  # another identity's own count
            third = await sign_in(a)
            sessions = a.app.sessions
            assert await sessions.get(first) is None
            for kept in (second, third, other):
                assert await sessions.get(kept) is not None


async def test_redis_not_answering_is_a_503_and_open_sockets_stream_on(
    aio_loop: Any, tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    with trio.fail_after(60):
        async with (
            redis_proxy() as proxy,
            # A lease that outlasts the outage: the owner keeps streaming meanwhile.
            node(tmp_path, pg_url, venue, key_prefix, "a", url=proxy.url, lease_s=30.0,
                 renew_s=0.3, margin_s=0.3) as a,
            kite_http(venue) as kite,
            trio.open_nursery() as nursery,
        ):
            assert a.cluster is not None and a.cluster.owns("primary")
            session = await sign_in(a)
            issued = await ticket_of(a)
            ws = await connect(nursery, a, headers=cookie_headers(a, session))
            reader = Reader(ws)
            assert (await reader.next())["type"] == "snapshot"

            proxy.freeze()
            async with api(a, ADMIN) as admin:  # nothing rotated: the old token works on
                rotation = await admin.put("/admin/accounts/primary/tokens/primary-desk")
            for response in (await ticket_of(a), await _sign_in_answer(a), rotation):
                assert response.status_code == 503, response.text
                body = response.json()
                assert body["error"] == "unavailable" and "Redis" in body["message"]
                assert "Traceback" not in response.text
            url = f"ws://{a.web_bind}/ws/orders/primary?ticket={issued.json()['ticket']}"
            with pytest.raises(trio_websocket.ConnectionRejected) as refused:
                async with trio_websocket.open_websocket_url(url):
                    pass  # pragma: no cover - refused before this
            assert refused.value.status_code == 503
            assert b"Redis" in (refused.value.body or b"")
            await wait_until(lambda: a.cluster.sessions.failed_checks > 0,  # type: ignore[union-attr]
                             "a session check to fail")
            order_id = await place(kite, order_form())
            await reader.until(lambda m: m.get("order", {}).get("order_id") == order_id)
            await streams(ws)

            proxy.thaw()
            assert (await ticket_of(a)).status_code == 200
            nursery.cancel_scope.cancel()


async def _sign_in_answer(running: Running) -> httpx.Response:
    async with api(running) as http:
        return await http.post("/session")
