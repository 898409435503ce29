"""Quart-Trio's websocket objects minus per-message work we do not use.

Per frame Quart re-runs `accept()` (building an empty `Headers` each time) and fires the
`websocket_sent` signal; at thousands of deliveries per second that is measurable. These
subclasses plug into Quart's own extension points (`websocket_class`, `asgi_websocket_class`)
and keep its behaviour otherwise.

Two hooks for the order stream (web/ws.py): `asgi_send`, the server's ASGI `send` (from which
web/_frames.py reaches the socket), and `on_message`: when a handler sets it (before accepting,
so no message can be queued earlier), received messages go to it as they arrive instead of to
`websocket.receive()`, so the handler needs no reader task of its own (a task, a nursery and a
parked receive per subscriber: a few KiB each of thousands of idle subscribers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from quart.signals import websocket_received
from quart_trio.asgi import TrioASGIWebsocketConnection
from quart_trio.wrappers import TrioWebsocket


class LeanWebsocket(TrioWebsocket):
    _accepted_once = False
    asgi_send: Any = None
    on_message: Callable[[str | bytes], object] | None = None

    async def accept(self, headers: Any = None, subprotocol: str | None = None) -> None:
        await super().accept(headers, subprotocol)
        self._accepted_once = True

    async def send(self, data: Any) -> None:
        if not self._accepted_once:
            await self.accept()
        await self._send(data)


class LeanWebsocketConnection(TrioASGIWebsocketConnection):
    _websocket: LeanWebsocket | None = None

    def _create_websocket_from_scope(self, send: Any) -> Any:
        websocket = super()._create_websocket_from_scope(send)
        websocket.asgi_send = send
        self._websocket = websocket
        return websocket

    async def handle_messages(  # type: ignore[override]
        self, nursery: trio.Nursery, receive: Any
    ) -> None:
        websocket = self._websocket
        while True:
            event = await receive()
            if event["type"] == "websocket.receive":
                message = event.get("bytes") or event["text"]
                await websocket_received.send_async(
                    message,
                    _sync_wrapper=self.app.ensure_async,  # type: ignore[arg-type]
                )
                hook = websocket.on_message if websocket is not None else None
                if hook is not None:
                    hook(message)
                else:
                    await self.send_channel.send(message)
            elif event["type"] == "websocket.disconnect":
                break
        nursery.cancel_scope.cancel()

    async def send_data(self, send: Any, data: str | bytes) -> None:  # no websocket_sent signal
        if isinstance(data, str):
            await send({"type": "websocket.send", "bytes": None, "text": data})
        else:
            await send({"type": "websocket.send", "bytes": data, "text": None})
