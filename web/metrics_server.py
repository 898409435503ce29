"""`/metrics` on a listener of its own (`[server] metrics_bind`), without a token.

For a Prometheus that reaches an address the public never does (loopback, a private network):
the listener serves that one route and nothing else, so it reveals no more than the scrape.
A bare ASGI app under hypercorn: no middleware, no auth, no routes to guard.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from .metrics import CONTENT_TYPE, Metrics

__all__ = ["serve_metrics"]

log = logging.getLogger("web.metrics")

_NOT_FOUND = b'{"error": "not_found", "message": "this listener serves GET /metrics only"}'

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _MetricsApp:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # a websocket: not accepted, hypercorn closes it
        if scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
            status, body, content_type = 200, self._metrics.render(), CONTENT_TYPE
        else:
            status, body, content_type = 404, _NOT_FOUND, "application/json"
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        })
        await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def serve_metrics(
    metrics: Metrics, bind: str, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve `GET /metrics` on `bind` until cancelled; `task_status.started("host:port")`."""
    config = HyperConfig()
    config.bind = [bind]
    config.accesslog = None
    config.errorlog = log

    async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(_MetricsApp(metrics), config, task_status=task_status, mode="asgi")

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(run)
        address = binds[0].split("://", 1)[-1] if binds else bind
        log.info("metrics listening on %s", address)
        task_status.started(address)
