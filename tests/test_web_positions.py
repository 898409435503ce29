"""Positions through the web front: `GET /accounts/{id}/positions` and the order websocket's
opt-in `positions` messages, moved by the venue's prices (`/_venue/ltp`) end to end."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio_websocket

from actors.account import ActorConfig
from tests.fixtures_web import TOKENS, Reader, WebStack, open_web_stack, place_market
from web import WebConfig

pytestmark = pytest.mark.filterwarnings("ignore::trio.TrioDeprecationWarning")

SBIN = "NSE:SBIN"


def sbin(message: dict[str, Any]) -> dict[str, Any] | None:
    return next((p for p in message["positions"] if p["tradingsymbol"] == "SBIN"), None)


def priced(message: dict[str, Any]) -> bool:
    return message.get("type") == "positions" and (sbin(message) or {}).get("ltp") is not None


async def set_ltp(stack: WebStack, price: float) -> None:
    async with httpx.AsyncClient(base_url=stack.venue.rest_url, timeout=10) as venue:
        answer = await venue.post("/_venue/ltp", json={SBIN: price})
    assert answer.status_code == 200, answer.text


async def test_venue_prices_move_the_pnl_on_the_websocket_and_the_route(
    web_stack: WebStack,
) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            reader = Reader(await web_stack.connect(nursery, query="positions=1"))
            first = await reader.until(lambda m: m["type"] == "positions")
            assert first["positions"] == [] and first["total_pnl"] == 0
            await place_market(web_stack.venue)
            filled = await reader.until(priced)
            average = sbin(filled)["average_price"]  # type: ignore[index]
            await set_ltp(web_stack, average + 2.5)
            moved = await reader.until(
                lambda m: priced(m) and sbin(m)["ltp"] == average + 2.5)  # type: ignore[index]
            assert sbin(moved)["pnl"] == pytest.approx(2.5)  # type: ignore[index]
            assert sbin(moved)["quantity"] == 1  # type: ignore[index]
            assert all("seq" not in m for m in reader.messages if m["type"] == "positions")
            async with web_stack.http(TOKENS["primary"]) as client:
                answer = await client.get("/accounts/primary/positions")
            assert answer.status_code == 200
            assert answer.json() == {k: v for k, v in moved.items() if k != "type"}
            nursery.cancel_scope.cancel()


async def test_without_opting_in_no_positions_messages(web_stack: WebStack) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            plain = Reader(await web_stack.connect(nursery))
            opted = Reader(await web_stack.connect(nursery, query="positions=1"))
            await place_market(web_stack.venue)
            await opted.until(priced)
            await plain.until(lambda m: m.get("order", {}).get("status") == "COMPLETE")
            await set_ltp(web_stack, 123.45)
            await opted.until(lambda m: priced(m) and sbin(m)["ltp"] == 123.45)  # type: ignore[index]
            assert not [m for m in plain.messages if m["type"] == "positions"]
            nursery.cancel_scope.cancel()


async def _unread_client(
    nursery: trio.Nursery, stack: WebStack
) -> trio_websocket.WebSocketConnection:
    """A `positions=1` client with a tiny receive window that reads nothing until told to."""
    host, port = stack.address.rsplit(":", 1)
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    await sock.connect((host, int(port)))
    return await trio_websocket.wrap_client_stream(
        nursery, trio.SocketStream(sock), host, "/ws/orders/primary?positions=1",
        extra_headers=[(b"Authorization", f"Bearer {TOKENS['primary']}".encode())],
        message_queue_size=0, receive_buffer_size=256,
    )


async def test_a_slow_reader_gets_the_latest_positions_and_is_never_closed(
    tmp_path: Path,
) -> None:
    config = ActorConfig(subscriber_queue=16, positions_max_rate_hz=50)  # 200 would not fit
    # The reader takes nothing while 200 prices move: on a loaded machine that outlasts the
    # default send deadline (a peer that takes no write for 10 s is dropped, rightly); the
    # deadline is not what this test is about.
    web = WebConfig(send_timeout_s=60.0)
    async with open_web_stack(tmp_path, accounts=("primary",), actor_config=config,
                              web_config=web) as stack:
        actor = stack.actors["primary"]
        with trio.fail_after(40):
            async with trio.open_nursery() as nursery:
                fast = Reader(await stack.connect(nursery, query="positions=1"))
                slow = await _unread_client(nursery, stack)
                await place_market(stack.venue)
                await fast.until(priced)
                for n in range(1, 201):  # far more than the slow one's queue and window hold
                    await set_ltp(stack, 100 + n / 10)
                await fast.until(lambda m: priced(m) and sbin(m)["ltp"] == 120.0)  # type: ignore[index]
                assert actor.status()["subscribers"] == 2  # not closed as a slow consumer
                reader = Reader(slow)
                last = await reader.until(lambda m: priced(m) and sbin(m)["ltp"] == 120.0)  # type: ignore[index]
                kept = [m for m in reader.messages if m["type"] == "positions"]
                assert len(kept) < 200  # the stale ones were skipped, the latest kept
                assert sbin(last)["pnl"] is not None  # type: ignore[index]
                nursery.cancel_scope.cancel()
