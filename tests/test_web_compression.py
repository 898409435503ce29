"""Order streams decline permessage-deflate (CPU per subscriber, and the shared-frame path);
a client that offers it still gets a working, uncompressed stream."""

from __future__ import annotations

from pathlib import Path

import trio
from websockets.asyncio.client import connect

from tests.fixtures_web import TOKENS, WebStack, frames_to_messages, open_web_stack
from web import WebConfig


def _handshake(url: str, token: str) -> tuple[str | None, dict]:
    """A `websockets` client (it offers permessage-deflate): the extensions header, 1st frame."""
    import asyncio

    async def run() -> tuple[str | None, dict]:
        headers = {"Authorization": f"Bearer {token}"}
        async with connect(url, additional_headers=headers) as ws:
            [first] = frames_to_messages(await ws.recv())
            return ws.response.headers.get("Sec-WebSocket-Extensions"), first

    # trio_asyncio fakes the loop policy per thread: this worker thread wants plain asyncio.
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        return asyncio.run(run())
    finally:
        asyncio.set_event_loop_policy(None)


async def _offer_deflate(stack: WebStack) -> tuple[str | None, dict]:
    url = stack.ws_url("primary")
    return await trio.to_thread.run_sync(_handshake, url, TOKENS["primary"])


async def test_deflate_is_declined_by_default(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with open_web_stack(tmp_path) as stack:
            extensions, first = await _offer_deflate(stack)
    assert extensions is None
    assert first["type"] == "snapshot"


async def test_deflate_when_configured(tmp_path: Path) -> None:
    with trio.fail_after(20):
        config = WebConfig(websocket_compression=True)
        async with open_web_stack(tmp_path, web_config=config) as stack:
            extensions, first = await _offer_deflate(stack)
    assert extensions is not None and "permessage-deflate" in extensions
    assert first["type"] == "snapshot"
