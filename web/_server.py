"""hypercorn's Trio worker, with connections that cannot take the server down.

hypercorn 0.18's Trio `TCPServer` (pinned in pyproject.toml) has three faults that let one
client end the whole process (hypercorn issue #203, a Trio worker dying under a security scan;
the AnyIO fork anycorn lists the EOF/CLOSE-WAIT fixes among its own):

- `_close()` calls `send_eof()` outside the send lock, so a keep-alive ping or a frame being
  written at that moment raises `trio.BusyResourceError`, which `protocol_send` lets through;
- `protocol_send` writes shielded with no deadline: a peer that never reads holds its
  connection, and the task writing to it, forever;
- every connection runs in the server's own nursery, so one connection's unexpected error
  ends `serve()` and everything above it.

`GuardedTCPServer` keeps hypercorn's protocol code (HTTP/1.1, h2, websockets) and replaces its
send path: every write has a deadline (`send_timeout_s`) and any failure aborts that connection
(socket closed with RST, the protocol told it is closed) instead of raising; EOF is sent only
when nobody is writing, and the socket is closed even when the task is cancelled.
`serve_app` is hypercorn's `worker_serve` without QUIC and multiprocessing, serving on
listening sockets that its caller owns (so a restart keeps the port) and running each
connection under a guard that logs its error and closes it.
"""

from __future__ import annotations

import logging
import math
import socket
import struct
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.config import Sockets
from hypercorn.events import Closed, Event, RawData
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import repr_socket_addr, wrap_app

log = logging.getLogger("web.server")

_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, drops unsent data
_PEER_GONE = (
    trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, OSError
)


class GuardedTCPServer(TCPServer):
    """One HTTP connection whose writes have a deadline and whose faults stay its own."""

    def __init__(self, *args: Any, send_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.send_timeout_s = send_timeout_s
        self.aborted = False

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, RawData):
            async with self.send_lock:
                if self.aborted:
                    return
                if await self.write(event.data):
                    return
                await self.abort()
            await self.protocol.handle(Closed())
        elif isinstance(event, Closed):
            await self._close()
            await self.protocol.handle(Closed())
        else:
            await super().protocol_send(event)

    async def write(self, data: bytes | memoryview) -> bool:
        """Write all of `data` within the send deadline (the caller holds the send lock).

        Shielded, as hypercorn's own write: a frame cut in half by a cancellation would corrupt
        the stream. False when the peer is gone or did not read in time."""
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self.send_timeout_s
            try:
                await self.stream.send_all(data)
                return True
            except _PEER_GONE:
                return False
        return not scope.cancelled_caught

    async def abort(self) -> None:
        """Drop the connection: the socket closed with RST (its unsent bytes discarded).

        Safe under the send lock: it does not call into the protocol. The read loop meets the
        closed socket and tells the protocol (and so the app); `protocol_send` also tells it."""
        if self.aborted:
            return
        self.aborted = True
        raw = _raw_socket(self.stream)
        if raw is not None:
            try:
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self.stream)

    async def _close(self) -> None:
        # Shielded: a cancelled connection still closes its socket (hypercorn's own `_close`
        # can be cancelled at `send_eof` and leave the socket to the garbage collector).
        with trio.CancelScope(shield=True):
            if not self.aborted and not self.send_lock.locked():
                try:
                    async with self.send_lock:  # nobody writes while the EOF goes out
                        with trio.move_on_after(self.send_timeout_s):
                            await self.stream.send_eof()
                except (AttributeError, *_PEER_GONE):
                    pass  # already gone, or TLS (no half-close)
            with trio.move_on_after(self.send_timeout_s):
                await self.stream.aclose()

    async def _initiate_server_close(self) -> None:
        await self.protocol.handle(Closed())
        await self._close()


def _raw_socket(stream: Any) -> trio.socket.SocketType | None:
    stream = getattr(stream, "transport_stream", stream)  # TLS: the socket underneath
    return getattr(stream, "socket", None)


async def _guarded(make_server: Callable[[Any], GuardedTCPServer], stream: Any) -> None:
    """Serve one connection; its failure is logged and ends it, never the server."""
    server = make_server(stream)
    try:
        await server.run()
    except Exception:
        log.exception("connection failed; closed (the server keeps serving)")
    except BaseExceptionGroup as group:  # an error beside a cancellation: log it, keep Cancelled
        cancelled, errors = group.split(trio.Cancelled)
        if errors is not None:
            log.error("connection failed; closed", exc_info=errors)
        if cancelled is not None:
            raise cancelled from None
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


async def serve_app(
    app: Any,
    config: HyperConfig,
    sockets: Sockets,
    *,
    send_timeout_s: float,
    shutdown_trigger: Callable[[], Awaitable[object]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on `sockets` (bound and listening; the caller keeps them open) until
    `shutdown_trigger` returns, then give connections `config.graceful_timeout` to finish."""
    app = wrap_app(app, config.wsgi_max_body_size, None)
    lifespan = Lifespan(app, config, {})
    context = WorkerContext(None)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections:
            # Each run listens on duplicates: trio closes its listeners on exit, the
            # caller's sockets stay bound for the next run.
            listeners = [
                trio.SocketListener(trio.socket.from_stdlib_socket(sock.dup()))
                for sock in sockets.insecure_sockets
            ]
            binds = [
                f"http://{repr_socket_addr(sock.family, sock.getsockname())}"
                for sock in sockets.insecure_sockets
            ]
            make_server = partial(
                GuardedTCPServer, app, config, context, ConnectionState({}),
                send_timeout_s=send_timeout_s,
            )
            async with trio.open_nursery() as listening:
                await listening.start(partial(
                    trio.serve_listeners, partial(_guarded, make_server), listeners,
                    handler_nursery=connections,
                ))
                task_status.started(binds)
                await shutdown_trigger()
                listening.cancel_scope.cancel()
            await context.terminated.set()
            connections.cancel_scope.deadline = trio.current_time() + (
                config.graceful_timeout if config.graceful_timeout is not None else math.inf
            )
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
