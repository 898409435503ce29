"""`WS /ws/orders/{account}` over real sockets: paper venue upstream, SQLite store, real actors.

Every wait is on a message or an event, bounded by `trio.fail_after`; no sleeps to settle.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlencode

import attrs
import pytest
import trio
import trio_websocket

from actors.account import ActorConfig
from tests.fixtures_web import (
    ADMIN_TOKEN,
    ALLOWED_ORIGIN,
    METRICS_TOKEN,
    TOKENS,
    Reader,
    WebStack,
    bearer,
    open_web_stack,
    place_market,
)
from web import WebConfig

pytestmark = pytest.mark.filterwarnings("ignore::trio.TrioDeprecationWarning")


async def _closed_with(ws: trio_websocket.WebSocketConnection) -> trio_websocket.CloseReason:
    with pytest.raises(trio_websocket.ConnectionClosed) as info:
        while True:
            await ws.get_message()
    return info.value.reason


async def _snapshot(reader: Reader) -> dict:
    first = await reader.next()
    assert first["type"] == "snapshot"
    status = await reader.next()
    assert status["type"] == "status"
    return first


# -- streaming -------------------------------------------------------------------------


async def test_subscribers_get_the_same_gap_free_sequence(web_stack: WebStack) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            readers = [Reader(await web_stack.connect(nursery)) for _ in range(5)]
            for reader in readers:
                snap = await _snapshot(reader)
                assert snap["seq"] == 0 and snap["orders"] == []
            ids = [await place_market(web_stack.venue) for _ in range(3)]
            target = web_stack.actors["primary"].seq
            # every order ends COMPLETE: wait until each reader saw three COMPLETEs
            seqs = []
            for reader in readers:
                done: set[str] = set()
                got = []
                while len(done) < 3:
                    message = await reader.next()
                    if message["type"] == "order":
                        got.append(message)
                        if message["order"]["status"] == "COMPLETE":
                            done.add(message["order"]["order_id"])
                assert done == set(ids)
                seqs.append([m["seq"] for m in got])
            assert seqs[0] == list(range(1, len(seqs[0]) + 1))  # gap-free, from 1
            assert all(s == seqs[0] for s in seqs)
            assert seqs[0][-1] >= target
            nursery.cancel_scope.cancel()


async def test_accounts_never_see_each_others_orders(web_stack: WebStack) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            primary = Reader(await web_stack.connect(nursery, "primary"))
            secondary = Reader(await web_stack.connect(nursery, "secondary"))
            await _snapshot(primary)
            await _snapshot(secondary)
            mine = await place_market(web_stack.venue, "primary")
            theirs = await place_market(web_stack.venue, "secondary")
            for reader, account, order_id in (
                (primary, "primary", mine),
                (secondary, "secondary", theirs),
            ):
                message = await reader.until(
                    lambda m: m["type"] == "order" and m["order"]["status"] == "COMPLETE"
                )
                assert message["account"] == account
                assert message["order"]["order_id"] == order_id
                orders = [m for m in reader.messages if m["type"] == "order"]
                assert {m["order"]["order_id"] for m in orders} == {order_id}
                assert {m["account"] for m in reader.messages} == {account}
            nursery.cancel_scope.cancel()


async def test_resume_with_since(tmp_path: Path) -> None:
    config = ActorConfig(replay_buffer=4)
    async with open_web_stack(tmp_path, accounts=("primary",), actor_config=config) as stack:
        actor = stack.actors["primary"]
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                first = Reader(await stack.connect(nursery))
                await _snapshot(first)
                await place_market(stack.venue)
                seen = await first.until(lambda m: m.get("order", {}).get("status") == "COMPLETE")
                await first.ws.aclose()
                k = seen["seq"]
                await place_market(stack.venue)
                await _wait_seq(actor, k + 2)
                # since=k: exactly the missed updates, then a status
                resumed = Reader(await stack.connect(nursery, query=f"since={k}"))
                missed = await resumed.orders_until_seq(actor.seq)
                assert [m["seq"] for m in missed] == list(range(k + 1, actor.seq + 1))
                assert (await resumed.next())["type"] == "status"
                # since=0 is older than the 4-update replay buffer: a fresh snapshot
                await place_market(stack.venue)
                await place_market(stack.venue)
                await _wait_seq(actor, k + 6)
                old = Reader(await stack.connect(nursery, query="since=0"))
                snap = await _snapshot(old)
                assert snap["seq"] == actor.seq and len(snap["orders"]) == 4
                # since=current: nothing to replay, only the status
                current = Reader(await stack.connect(nursery, query=f"since={actor.seq}"))
                assert (await current.next())["type"] == "status"
                nursery.cancel_scope.cancel()


async def _wait_seq(actor, seq: int) -> None:  # type: ignore[no-untyped-def]
    """Wait on the actor's own broadcasts (no polling) until it has committed `seq`."""
    sub = actor.subscribe()
    try:
        while actor.seq < seq:
            await sub.receive.receive()
    finally:
        actor.unsubscribe(sub)


@pytest.mark.parametrize("since", ["-1", "abc", "1.5", "9" * 30])
async def test_invalid_since_closes_4400(web_stack: WebStack, since: str) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            ws = await web_stack.connect(nursery, query=urlencode({"since": since}))
            reason = await _closed_with(ws)
            assert reason.code == 4400 and "since" in reason.reason
            nursery.cancel_scope.cancel()


async def _tiny_window_client(
    nursery: trio.Nursery, stack: WebStack
) -> trio_websocket.WebSocketConnection:
    """A client whose kernel receive buffer is tiny and which reads nothing until told to."""
    host, port = stack.address.rsplit(":", 1)
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    await sock.connect((host, int(port)))
    return await trio_websocket.wrap_client_stream(
        nursery,
        trio.SocketStream(sock),
        host,
        "/ws/orders/primary",
        extra_headers=[(b"Authorization", f"Bearer {TOKENS['primary']}".encode())],
        message_queue_size=0,
        receive_buffer_size=256,
    )


async def test_slow_subscriber_is_closed_4008_while_a_fast_one_keeps_up(tmp_path: Path) -> None:
    config = ActorConfig(subscriber_queue=4)
    async with open_web_stack(tmp_path, accounts=("primary",), actor_config=config) as stack:
        actor = stack.actors["primary"]
        with trio.fail_after(40):
            async with trio.open_nursery() as nursery:
                fast = Reader(await stack.connect(nursery))
                await _snapshot(fast)
                slow = await _tiny_window_client(nursery, stack)
                assert actor.status()["subscribers"] == 2  # subscribed before the handshake ends
                placed = 0
                while actor.status()["subscribers"] == 2:
                    assert placed < 400, "the slow subscriber was never closed"
                    await place_market(stack.venue)
                    placed += 1
                    await fast.until(lambda m: m.get("order", {}).get("status") == "COMPLETE")
                # the fast one saw every update, gap-free; the slow one is gone from the actor
                seqs = [m["seq"] for m in fast.messages if m["type"] == "order"]
                assert seqs == list(range(1, actor.seq + 1))
                # the slow one, reading at last: what was queued, in order, then 4008
                got = []
                with pytest.raises(trio_websocket.ConnectionClosed) as info:
                    while True:
                        got.append(await slow.get_message())
                assert info.value.reason.code == 4008
                assert info.value.reason.reason == "slow consumer"
                slow_seqs = [m["seq"] for f in got for m in _flatten(f) if m["type"] == "order"]
                assert slow_seqs == list(range(1, len(slow_seqs) + 1))
                assert len(slow_seqs) < actor.seq
                # and it can resume exactly where it stopped
                resumed = Reader(await stack.connect(nursery, query=f"since={slow_seqs[-1]}"))
                missed = await resumed.orders_until_seq(actor.seq)
                assert [m["seq"] for m in missed] == list(range(slow_seqs[-1] + 1, actor.seq + 1))
                nursery.cancel_scope.cancel()


def _flatten(frame: str | bytes) -> list[dict]:
    from tests.fixtures_web import frames_to_messages

    return frames_to_messages(frame)


# -- auth --------------------------------------------------------------------------------


@attrs.frozen
class WsAuthCase:
    name: str
    account: str
    token: str | None = None
    query: str = ""
    close_code: int | None = None  # None: accepted (snapshot first)


WS_AUTH_CASES = [
    WsAuthCase("header", "primary", token=TOKENS["primary"]),
    WsAuthCase("access_token query", "primary", query=f"access_token={TOKENS['primary']}"),
    WsAuthCase("admin any account", "secondary", token=ADMIN_TOKEN),
    WsAuthCase("missing", "primary", close_code=4401),
    WsAuthCase("wrong token", "primary", token="nope", close_code=4401),
    WsAuthCase("wrong access_token", "primary", query="access_token=nope", close_code=4401),
    WsAuthCase("non-bearer header", "primary", token=None, query="", close_code=4401),
    WsAuthCase("other account", "secondary", token=TOKENS["primary"], close_code=4403),
    WsAuthCase("unknown account", "nobody", token=ADMIN_TOKEN, close_code=4404),
    WsAuthCase("unknown ticket", "primary", query="ticket=bogus", close_code=4401),
]


@pytest.mark.parametrize("case", WS_AUTH_CASES, ids=lambda c: c.name)
async def test_ws_auth(web_stack: WebStack, case: WsAuthCase) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            headers = [("Authorization", "Basic abc")] if case.name == "non-bearer header" else []
            ws = await web_stack.connect(
                nursery, case.account, token=case.token, query=case.query, headers=headers
            )
            if case.close_code is None:
                assert (await Reader(ws).next())["type"] == "snapshot"
            else:
                reason = await _closed_with(ws)
                assert reason.code == case.close_code, reason
            nursery.cancel_scope.cancel()


async def test_ws_ticket_is_single_use_and_account_bound(web_stack: WebStack) -> None:
    with trio.fail_after(10):
        async with web_stack.http(TOKENS["primary"]) as http, trio.open_nursery() as nursery:
            response = await http.post("/accounts/primary/ws-ticket")
            assert response.status_code == 200
            body = response.json()
            assert body["expires_in"] == 30 and len(body["ticket"]) >= 20
            ticket = body["ticket"]
            ws = await web_stack.connect(nursery, token=None, query=f"ticket={ticket}")
            assert (await Reader(ws).next())["type"] == "snapshot"
            again = await web_stack.connect(nursery, token=None, query=f"ticket={ticket}")
            assert (await _closed_with(again)).code == 4401
            # bound to the account it was issued for
            other = (await http.post("/accounts/primary/ws-ticket")).json()["ticket"]
            wrong = await web_stack.connect(nursery, "secondary", token=None,
                                            query=f"ticket={other}")
            assert (await _closed_with(wrong)).code == 4403
            # a token cannot get a ticket for another account
            assert (await http.post("/accounts/secondary/ws-ticket")).status_code == 403
            nursery.cancel_scope.cancel()


async def test_ws_ticket_expires_after_30_s(tmp_path: Path) -> None:
    now = [1000.0]
    config = WebConfig(clock=lambda: now[0])
    async with open_web_stack(tmp_path, accounts=("primary",), web_config=config) as stack:
        with trio.fail_after(10):
            async with stack.http(TOKENS["primary"]) as http, trio.open_nursery() as nursery:
                fresh = (await http.post("/accounts/primary/ws-ticket")).json()["ticket"]
                stale = (await http.post("/accounts/primary/ws-ticket")).json()["ticket"]
                now[0] += 29.9
                ws = await stack.connect(nursery, token=None, query=f"ticket={fresh}")
                assert (await Reader(ws).next())["type"] == "snapshot"
                now[0] += 0.1  # 30 s after issue
                late = await stack.connect(nursery, token=None, query=f"ticket={stale}")
                assert (await _closed_with(late)).code == 4401
                nursery.cancel_scope.cancel()


async def test_disallowed_origin_is_refused(web_stack: WebStack) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            with pytest.raises(trio_websocket.ConnectionRejected) as info:
                async with trio_websocket.open_websocket_url(
                    web_stack.ws_url("primary"),
                    extra_headers=[
                        (b"Authorization", f"Bearer {TOKENS['primary']}".encode()),
                        (b"Origin", b"http://evil.example"),
                    ],
                ):
                    pass  # pragma: no cover - refused before this
            assert info.value.status_code == 403
            assert b'"error":"forbidden"' in (info.value.body or b"")
            ok = await web_stack.connect(nursery, headers=[("Origin", ALLOWED_ORIGIN)])
            assert (await Reader(ok).next())["type"] == "snapshot"
            nursery.cancel_scope.cancel()


# -- the client's side of the protocol ---------------------------------------------------


async def test_ping_pong_and_malformed_frames_keep_the_connection(web_stack: WebStack) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            reader = Reader(await web_stack.connect(nursery))
            await _snapshot(reader)
            await reader.ws.send_message("ping")
            assert await reader.next() == {"type": "pong"}
            for junk in ("hello", '{"type":"subscribe"}', "", b"\x00\x01"):
                await reader.ws.send_message(junk)
                error = await reader.next()
                assert error["type"] == "error" and error["message"]
            await reader.ws.send_message("ping")
            assert await reader.next() == {"type": "pong"}
            # still live: an order arrives after all that
            await place_market(web_stack.venue)
            order = await reader.until(lambda m: m["type"] == "order")
            assert order["seq"] == 1
            nursery.cancel_scope.cancel()


async def test_oversized_frame_closes_1009(web_stack: WebStack) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            ws = await web_stack.connect(nursery)
            await ws.send_message("x" * (64 * 1024 + 1))
            assert (await _closed_with(ws)).code == 1009
            nursery.cancel_scope.cancel()


# -- shutdown ----------------------------------------------------------------------------


async def test_shutdown_closes_every_socket_1001_quickly(web_stack: WebStack) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            readers = [Reader(await web_stack.connect(nursery, a))
                       for a in ("primary", "primary", "secondary")]
            for reader in readers:
                await _snapshot(reader)
            started = trio.current_time()
            web_stack.shutdown.set()
            for reader in readers:
                reason = await _closed_with(reader.ws)
                assert reason.code == 1001
            with trio.fail_after(1):
                await web_stack.stopped.wait()
            assert trio.current_time() - started < 1.0
            assert len(web_stack.app.streams) == 0
            assert all(a.status()["subscribers"] == 0 for a in web_stack.actors.values())
            nursery.cancel_scope.cancel()


async def test_connection_gauge_and_status(web_stack: WebStack) -> None:
    with trio.fail_after(10):
        async with web_stack.http() as http, trio.open_nursery() as nursery:
            readers = [Reader(await web_stack.connect(nursery)) for _ in range(2)]
            for reader in readers:
                await _snapshot(reader)
            status = (await http.get("/ws/status", headers=bearer(TOKENS["primary"]))).json()
            (primary,) = status["accounts"]
            assert primary["account"] == "primary" and status["connections"] == 2
            assert primary["subscribers"] == 2 and primary["upstream"] == "connected"
            metrics = (await http.get("/metrics", headers=bearer(METRICS_TOKEN))).text
            assert 'websocket_connections{account="primary"} 2.0' in metrics
            await readers[0].ws.aclose()
            await readers[1].ws.aclose()
            nursery.cancel_scope.cancel()
        # handlers finish when the peers' close handshakes are done
        with trio.fail_after(5):
            await web_stack.app.activity.wait_idle()
        text = (await _get(web_stack, "/metrics", headers=bearer(METRICS_TOKEN))).text
        assert 'websocket_connections{account="primary"} 0.0' in text
        assert "websocket_connection_duration_seconds_count 2.0" in text


async def _get(stack: WebStack, path: str, **kwargs):  # type: ignore[no-untyped-def]
    async with stack.http() as http:
        return await http.get(path, **kwargs)


async def test_streams_without_direct_writes(tmp_path: Path) -> None:
    """`WebConfig.direct_writes=False`: every frame goes through the sender task, same stream."""
    config = WebConfig(direct_writes=False)
    async with open_web_stack(tmp_path, accounts=("primary",), web_config=config) as stack:
        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:
                reader = Reader(await stack.connect(nursery))
                await _snapshot(reader)
                placed = await place_market(stack.venue)
                await reader.until(lambda m: m["type"] == "order"
                                   and m["order"]["order_id"] == placed
                                   and m["order"]["status"] == "COMPLETE")
                await reader.ws.send_message("ping")
                await reader.until(lambda m: m["type"] == "pong")
                nursery.cancel_scope.cancel()
