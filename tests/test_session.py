"""The session cookie: signing in on the page, where the cookie is taken (the order stream and
`POST …/ws-ticket`, from an allowed Origin only) and where it is not (every other route), and
what ends a session and the sockets it opened: sign-out, a token rotation, expiry, eviction.

Real sockets, the paper venue, real actors (tests/fixtures_web.py); the SessionBook cases run on
a hand-moved clock.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import httpx
import pytest
import trio
import trio_websocket
from quart import request

from supervision.settings import ConfigError, load_settings
from tests.fixtures_web import (
    ADMIN_TOKEN,
    ALLOWED_ORIGIN,
    TOKENS,
    Reader,
    WebStack,
    bearer,
    open_web_stack,
    place_market,
)
from web import WebConfig
from web.auth import Identity
from web.callers import cookie_of
from web.orders import orders_blueprint
from web.sessions import SESSION_ENDED, SessionBook, cookie_name
from web.signin import sign_in as sign_in_view

pytestmark = pytest.mark.filterwarnings("ignore::trio.TrioDeprecationWarning")

COOKIE = "orderdesk_session"
PRIMARY = Identity("primary-client", "primary")


@attrs.define(eq=False)
class _Socket:
    closed: str | None = None

    def close(self, reason: str) -> None:
        self.closed = reason


# -- the book ----------------------------------------------------------------------------


async def test_a_session_expires_after_its_lifetime() -> None:
    now = [100.0]
    book = SessionBook(60.0, clock=lambda: now[0])
    session = await book.open(PRIMARY)
    socket = _Socket()
    assert book.attach(session.id, socket)
    now[0] += 59.9
    assert await book.get(session.id) == session
    now[0] += 0.1
    assert await book.get(session.id) is None
    assert socket.closed == SESSION_ENDED
    assert not book.attach(session.id, _Socket())


async def test_sessions_are_bounded_and_the_oldest_goes_first() -> None:
    book = SessionBook(60.0, max_sessions=2)
    first, second = await book.open(PRIMARY), await book.open(PRIMARY)
    socket = _Socket()
    book.attach(first.id, socket)
    third = await book.open(Identity("other", "secondary"))
    assert len(book) == 2
    assert await book.get(first.id) is None and socket.closed == SESSION_ENDED
    assert await book.get(second.id) and await book.get(third.id)
    assert await book.end_for(PRIMARY) == 1 and len(book) == 1


async def test_the_cookie_is_never_the_token_and_is_named_for_tls() -> None:
    session = await SessionBook(60.0).open(PRIMARY)
    assert len(session.id) >= 40 and TOKENS["primary"] not in session.id
    assert cookie_name(True) == "__Host-orderdesk_session"
    assert cookie_name(False) == COOKIE


def test_session_ttl_is_a_setting(tmp_path: Path) -> None:
    path = tmp_path / "orderdesk.toml"
    base = ('[server]\nadmin_token = "a-secret"\n{}\n[venue]\nbind = "127.0.0.1:0"\n'
            '[[accounts]]\nid = "primary"\nbroker = "paper"\n')
    path.write_text(base.format("session_ttl_s = 600"))
    assert load_settings(str(path), environ={}).session_ttl_s == 600.0
    path.write_text(base.format('session_ttl_s = "long"'))
    with pytest.raises(ConfigError, match="server.session_ttl_s"):
        load_settings(str(path), environ={})


# -- over the wire -----------------------------------------------------------------------


async def sign_in(stack: WebStack, token: str = TOKENS["primary"]) -> str:
    async with stack.http(token) as http:
        response = await http.post("/session")
    assert response.status_code == 204, response.text
    header = response.headers["set-cookie"]
    for attribute in ("HttpOnly", "Path=/", "SameSite=Strict", "Max-Age="):
        assert attribute in header
    assert "Secure" not in header  # plain HTTP here
    return str(response.cookies[COOKIE])


def cookie_headers(session_id: str, origin: str | None) -> list[tuple[str, str]]:
    headers = [("Cookie", f"{COOKIE}={session_id}")]
    return headers + [("Origin", origin)] if origin is not None else headers


def own_origin(stack: WebStack) -> str:
    return f"http://{stack.address}"


async def closed_with(ws: trio_websocket.WebSocketConnection) -> trio_websocket.CloseReason:
    with pytest.raises(trio_websocket.ConnectionClosed) as info:
        while True:
            await ws.get_message()
    return info.value.reason


async def test_the_cookie_opens_the_order_stream_from_our_page(web_stack: WebStack) -> None:
    with trio.fail_after(15):
        session = await sign_in(web_stack)
        async with trio.open_nursery() as nursery:
            for origin in (own_origin(web_stack), ALLOWED_ORIGIN):
                ws = await web_stack.connect(nursery, token=None,
                                             headers=cookie_headers(session, origin))
                reader = Reader(ws)
                assert (await reader.next())["type"] == "snapshot"
                await ws.send_message("ping")
                await reader.until(lambda m: m["type"] == "pong")
                placed = await place_market(web_stack.venue)
                await reader.until(lambda m, o=placed: m.get("order", {}).get("order_id") == o)
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("origin", [None, "null", "http://evil.example"])
async def test_the_cookie_needs_an_allowed_origin(web_stack: WebStack, origin: str | None) -> None:
    with trio.fail_after(10):
        session = await sign_in(web_stack)
        sent = [(k.encode(), v.encode()) for k, v in cookie_headers(session, origin)]
        with pytest.raises(trio_websocket.ConnectionRejected) as info:
            async with trio_websocket.open_websocket_url(web_stack.ws_url("primary"),
                                                         extra_headers=sent):
                pass  # pragma: no cover - refused before this
        assert info.value.status_code == 403
        async with web_stack.http() as http:
            headers = dict(cookie_headers(session, origin))
            response = await http.post("/accounts/primary/ws-ticket", headers=headers)
        assert response.status_code == 403


async def test_state_changing_routes_ignore_the_cookie(tmp_path: Path) -> None:
    """No CSRF surface: a batch (or any route but the two) with only the cookie is 401."""
    async with open_web_stack(tmp_path, accounts=("primary",),
                              blueprints=(orders_blueprint,)) as stack:
        with trio.fail_after(15):
            session = await sign_in(stack)
            headers = dict(cookie_headers(session, own_origin(stack)))
            batch = {"orders": [{"tradingsymbol": "SBIN", "exchange": "NSE",
                                 "transaction_type": "BUY", "order_type": "MARKET",
                                 "quantity": 1, "product": "MIS"}]}
            async with stack.http() as http:
                posted = await http.post("/accounts/primary/batch-orders", json=batch,
                                         headers=headers)
                assert posted.status_code == 401, posted.text
                for method, path in (("GET", "/accounts/primary/orders"),
                                     ("DELETE", "/session"), ("POST", "/session")):
                    answer = await http.request(method, path, headers=headers)
                    assert answer.status_code == 401, (method, path, answer.text)
            assert stack.actors["primary"].orders() == []


async def test_sign_out_ends_the_session_and_closes_its_sockets(web_stack: WebStack) -> None:
    with trio.fail_after(15):
        session = await sign_in(web_stack)
        origin = own_origin(web_stack)
        async with trio.open_nursery() as nursery, web_stack.http() as http:
            direct = await web_stack.connect(nursery, token=None,
                                             headers=cookie_headers(session, origin))
            headers = dict(cookie_headers(session, origin))
            ticket = (await http.post("/accounts/primary/ws-ticket", headers=headers)).json()
            by_ticket = await web_stack.connect(nursery, token=None,
                                                query=f"ticket={ticket['ticket']}")
            by_token = await web_stack.connect(nursery)  # a bearer socket: not the session's
            for ws in (direct, by_ticket, by_token):
                assert (await Reader(ws).next())["type"] == "snapshot"
            out = await http.delete("/session", headers={**headers, **bearer(TOKENS["primary"])})
            assert out.status_code == 204 and "Max-Age=0" in out.headers["set-cookie"]
            for ws in (direct, by_ticket):
                reason = await closed_with(ws)
                assert (reason.code, reason.reason) == (4401, SESSION_ENDED)
            await by_token.send_message("ping")
            assert (await Reader(by_token).until(lambda m: m["type"] == "pong"))
            again = await web_stack.connect(nursery, token=None,
                                            headers=cookie_headers(session, origin))
            assert (await closed_with(again)).code == 4401
            refused = await http.post("/accounts/primary/ws-ticket", headers=headers)
            assert refused.status_code == 401
            nursery.cancel_scope.cancel()


async def test_a_ticket_of_an_ended_session_opens_no_socket(web_stack: WebStack) -> None:
    with trio.fail_after(10):
        session = await sign_in(web_stack)
        headers = dict(cookie_headers(session, own_origin(web_stack)))
        async with trio.open_nursery() as nursery, web_stack.http() as http:
            ticket = (await http.post("/accounts/primary/ws-ticket", headers=headers)).json()
            out = await http.delete("/session", headers={**headers, **bearer(TOKENS["primary"])})
            assert out.status_code == 204
            late = await web_stack.connect(nursery, token=None,
                                           query=f"ticket={ticket['ticket']}")
            reason = await closed_with(late)
            assert (reason.code, reason.reason) == (4401, SESSION_ENDED)
            nursery.cancel_scope.cancel()


async def test_sign_out_leaves_another_callers_session(web_stack: WebStack) -> None:
    with trio.fail_after(10):
        session = await sign_in(web_stack, TOKENS["primary"])
        headers = dict(cookie_headers(session, own_origin(web_stack)))
        async with web_stack.http(TOKENS["secondary"]) as http:
            assert (await http.delete("/session", headers=headers)).status_code == 204
        async with web_stack.http() as http:
            ticket = await http.post("/accounts/primary/ws-ticket", headers=headers)
        assert ticket.status_code == 200


async def test_token_rotation_ends_its_sessions_and_their_sockets(web_stack: WebStack) -> None:
    with trio.fail_after(15):
        session = await sign_in(web_stack, TOKENS["primary"])
        other = await sign_in(web_stack, TOKENS["secondary"])
        origin = own_origin(web_stack)
        async with trio.open_nursery() as nursery:
            mine = await web_stack.connect(nursery, token=None,
                                           headers=cookie_headers(session, origin))
            theirs = await web_stack.connect(nursery, "secondary", token=None,
                                             headers=cookie_headers(other, origin))
            for ws in (mine, theirs):
                assert (await Reader(ws).next())["type"] == "snapshot"
            async with web_stack.http(ADMIN_TOKEN) as admin:
                rotated = await admin.put("/admin/accounts/primary/tokens/primary-client")
            assert rotated.status_code == 200, rotated.text
            body = rotated.json()
            assert body["sessions_ended"] == 1 and body["token"] != TOKENS["primary"]
            reason = await closed_with(mine)
            assert (reason.code, reason.reason) == (4401, SESSION_ENDED)
            await theirs.send_message("ping")
            await Reader(theirs).until(lambda m: m["type"] == "pong")
            async with web_stack.http(TOKENS["primary"]) as old, \
                    web_stack.http(body["token"]) as new:
                assert (await old.get("/accounts/primary/orders")).status_code == 401
                assert (await new.get("/accounts/primary/orders")).status_code == 200
            nursery.cancel_scope.cancel()


async def test_an_expired_session_opens_no_socket(tmp_path: Path) -> None:
    now = [1000.0]
    config = WebConfig(clock=lambda: now[0])
    async with open_web_stack(tmp_path, accounts=("primary",), web_config=config) as stack:
        with trio.fail_after(10):
            session = await sign_in(stack)
            now[0] += stack.settings.session_ttl_s
            async with trio.open_nursery() as nursery:
                ws = await stack.connect(nursery, token=None,
                                         headers=cookie_headers(session, own_origin(stack)))
                reason = await closed_with(ws)
                assert reason.code == 4401 and "sign in again" in (reason.reason or "")
                nursery.cancel_scope.cancel()


async def test_sign_in_replaces_the_previous_session(web_stack: WebStack) -> None:
    with trio.fail_after(10):
        first = await sign_in(web_stack)
        async with httpx.AsyncClient(base_url=web_stack.base_url,
                                     headers=bearer(TOKENS["primary"])) as http:
            second = await http.post("/session", headers={"Cookie": f"{COOKIE}={first}"})
        assert second.cookies[COOKIE] != first
        assert await web_stack.app.sessions.get(first) is None


async def test_over_tls_the_cookie_is_host_prefixed_and_secure(web_stack: WebStack) -> None:
    """hypercorn serving TLS (or a proxy it trusts) makes the scheme https: the same route
    then sets `__Host-orderdesk_session` with `Secure`, and reads only that name back."""
    app = web_stack.app
    async with app.test_request_context("/session", method="POST", scheme="https",
                                        headers=bearer(TOKENS["primary"])):
        response = await sign_in_view()
    header = response.headers["Set-Cookie"]
    assert header.startswith("__Host-orderdesk_session=")
    for attribute in ("Secure", "HttpOnly", "Path=/", "SameSite=Strict"):
        assert attribute in header
    session_id = header.split(";")[0].split("=", 1)[1]
    assert await app.sessions.get(session_id) is not None
    for scheme, cookie, found in (("https", "__Host-orderdesk_session", True),
                                  ("https", COOKIE, False), ("http", COOKIE, True)):
        async with app.test_request_context("/", scheme=scheme,
                                            headers={"Cookie": f"{cookie}={session_id}"}):
            assert (cookie_of(request) == session_id) is found, (scheme, cookie)
