"""Instruments a websocket subscriber watches (`{"action":"watch",...}` with `?positions=1`):
their prices in that socket's own `positions` messages, one upstream subscription per
instrument however many sockets watch it, released when they close; bad messages answered
with an error naming field and rule, the socket staying open. Real service, paper venue."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from tests.fixtures_web import Reader, WebStack

pytestmark = pytest.mark.filterwarnings("ignore::trio.TrioDeprecationWarning")

FUT = "NFO:NIFTY26DECFUT"


def watch(*instruments: str, action: str = "watch") -> str:
    return json.dumps({"action": action, "instruments": list(instruments)})


def watched(message: dict[str, Any]) -> list[dict[str, Any]] | None:
    return message.get("watched") if message["type"] == "positions" else None


async def set_ltp(stack: WebStack, price: float) -> None:
    async with httpx.AsyncClient(base_url=stack.venue.rest_url, timeout=10) as venue:
        answer = await venue.post("/_venue/ltp", json={FUT: price})
    assert answer.status_code == 200, answer.text


async def open_reader(stack: WebStack, nursery: trio.Nursery, query: str = "positions=1"
                      ) -> Reader:
    reader = Reader(await stack.connect(nursery, query=query))
    await reader.until(lambda m: m["type"] == ("positions" if query else "status"))
    return reader


async def test_a_watched_instrument_price_arrives_on_that_socket_only(web_stack: WebStack) -> None:
    live = web_stack.actors["primary"].live
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            reader = await open_reader(web_stack, nursery)
            other = await open_reader(web_stack, nursery)
            await reader.ws.send_message(watch(FUT))
            first = await reader.until(lambda m: bool(watched(m)))
            (entry,) = watched(first)  # type: ignore[misc]
            token = entry["instrument_token"]
            assert (entry["exchange"], entry["tradingsymbol"]) == ("NFO", "NIFTY26DECFUT")
            assert token & 0xFF == 2
            await live.until(lambda: token in live.subscribed)
            await set_ltp(web_stack, 24123.5)
            await reader.until(lambda m: (watched(m) or [{}])[0].get("ltp") == 24123.5)
            await other.ws.send_message("ping")
            await other.until(lambda m: m["type"] == "pong")
            assert all("watched" not in m for m in other.messages)

            await reader.ws.send_message(watch(FUT, action="unwatch"))
            await reader.until(lambda m: watched(m) is None and m["type"] == "positions")
            await live.until(lambda: token not in live.subscribed)
            nursery.cancel_scope.cancel()


async def test_two_sockets_share_one_subscription_released_when_they_close(
    web_stack: WebStack,
) -> None:
    live = web_stack.actors["primary"].live
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            first = await open_reader(web_stack, nursery)
            second = await open_reader(web_stack, nursery)
            for reader in (first, second):
                await reader.ws.send_message(watch(FUT))
                message = await reader.until(lambda m: bool(watched(m)))
            token = watched(message)[0]["instrument_token"]  # type: ignore[index]
            await live.until(lambda: live.refs.count(token) == 2 and token in live.subscribed)
            assert live.subscribed == {token}  # one upstream subscription for both

            await first.ws.aclose()
            await live.until(lambda: live.refs.count(token) == 1)
            assert token in live.subscribed
            await second.ws.aclose()
            await live.until(lambda: live.refs.count(token) == 0 and not live.subscribed)
            nursery.cancel_scope.cancel()


async def error_for(reader: Reader, message: str) -> dict[str, Any]:
    await reader.ws.send_message(message)
    return await reader.until(lambda m: m["type"] == "error")


@pytest.mark.parametrize(("message", "field", "rule"), [
    (json.dumps({"action": "watch"}), "instruments", "type"),
    (json.dumps({"action": "look", "instruments": [FUT]}), "action", "enum"),
    (watch(), "instruments", "range"),
    (watch(*[f"NFO:X{i}" for i in range(51)]), "instruments", "range"),
    (watch(FUT, "NIFTY"), "instruments[1]", "format"),
    (watch("XYZ:NIFTY"), "instruments[0]", "enum"),
    (watch(FUT, "NFO:NOSUCHFUT"), "instruments[1]", "known"),
    (json.dumps({"action": "watch", "instruments": [FUT], "depth": 5}), "depth", "unknown"),
])
async def test_bad_watch_messages_get_an_error_and_the_socket_stays_open(
    web_stack: WebStack, message: str, field: str, rule: str
) -> None:
    live = web_stack.actors["primary"].live
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            reader = await open_reader(web_stack, nursery)
            error = await error_for(reader, message)
            assert (error["field"], error["rule"]) == (field, rule), error
            assert error["message"]
            await reader.ws.send_message("ping")
            await reader.until(lambda m: m["type"] == "pong")
            assert not live.refs.wanted()  # nothing of a refused message is watched
            nursery.cancel_scope.cancel()


async def test_watching_needs_the_positions_stream(web_stack: WebStack) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            reader = await open_reader(web_stack, nursery, query="")
            error = await error_for(reader, watch(FUT))
            assert (error["field"], error["rule"]) == ("action", "positions")
            assert "positions=1" in error["message"]
            await reader.ws.send_message("not json")
            assert (await reader.until(lambda m: m["type"] == "error"))["message"].startswith(
                "unsupported message")
            await reader.ws.send_message("ping")
            await reader.until(lambda m: m["type"] == "pong")
            nursery.cancel_scope.cancel()
