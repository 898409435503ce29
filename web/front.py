"""The web front as a child of the supervision tree.

The listening sockets are bound once, when the front is made, and kept for the life of the
process. If the server fails anyway (a connection's error no longer can: web/_server.py), the
supervisor restarts `run` on the same port and clients reconnect as after any drop, while the
accounts, batches, webhooks and the store keep running.
"""

from __future__ import annotations

import attrs
import trio
from hypercorn.config import Sockets
from hypercorn.utils import repr_socket_addr

from .app import bind_web, serve_web
from .deps import OrderDeskApp


class WebFrontFailed(Exception):
    """The server was made to fail (`WebFront.fail`): a fault drill."""


@attrs.define(eq=False)
class WebFront:
    app: OrderDeskApp
    sockets: Sockets
    shutdown: trio.Event
    _failure: trio.Event = attrs.field(factory=trio.Event, init=False)
    _reason: str = attrs.field(default="", init=False)

    @classmethod
    def bind(cls, app: OrderDeskApp, bind: str, shutdown: trio.Event) -> WebFront:
        return cls(app, bind_web(bind, app.deps.config), shutdown)

    @property
    def address(self) -> str:
        """host:port of the first listening socket (the real port when bound to port 0)."""
        sock = self.sockets.insecure_sockets[0]
        return repr_socket_addr(sock.family, sock.getsockname())

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until the shutdown event (then return) or a failure (then raise)."""
        self._failure = trio.Event()
        async with trio.open_nursery() as nursery:

            async def serve(*, task_status: trio.TaskStatus[str]) -> None:
                await serve_web(
                    self.app, self.sockets, shutdown_trigger=self.shutdown.wait,
                    task_status=task_status,
                )
                nursery.cancel_scope.cancel()

            task_status.started(await nursery.start(serve))
            await self._failure.wait()
            raise WebFrontFailed(self._reason)

    def fail(self, reason: str) -> None:
        """Fault drill: the running server fails as a crash would, and is restarted."""
        self._reason = reason
        self._failure.set()

    def close(self) -> None:
        for sock in self.sockets.insecure_sockets:
            sock.close()
