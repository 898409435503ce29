"""Quart-Trio's websocket objects minus per-message work we do not use.

Per frame Quart re-runs `accept()` (building an empty `Headers` each time) and fires the
`websocket_sent` signal; at thousands of deliveries per second that is measurable. These
subclasses plug into Quart's own extension points (`websocket_class`, `asgi_websocket_class`)
and keep its behaviour otherwise.
"""

from __future__ import annotations

from typing import Any

from quart_trio.asgi import TrioASGIWebsocketConnection
from quart_trio.wrappers import TrioWebsocket


class LeanWebsocket(TrioWebsocket):
    _accepted_once = False

    async def accept(self, headers: Any = None, subprotocol: str | None = None) -> None:
        await super().accept(headers, subprotocol)
        self._accepted_once = True

    async def send(self, data: Any) -> None:
        if not self._accepted_once:
            await self.accept()
        await self._send(data)


class LeanWebsocketConnection(TrioASGIWebsocketConnection):
    async def send_data(self, send: Any, data: str | bytes) -> None:  # no websocket_sent signal
        if isinstance(data, str):
            await send({"type": "websocket.send", "bytes": None, "text": data})
        else:
            await send({"type": "websocket.send", "bytes": data, "text": None})
