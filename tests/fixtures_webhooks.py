"""A webhook receiver under test control (a raw trio TCP server speaking HTTP/1.1 through h11):
it records every request and can be told to answer 500 a number of times, to hang until the
client gives up, or to answer 500 after it has processed an event (a lost acknowledgement).
Tests wait on what it recorded (an event per request), never on sleeps."""

from __future__ import annotations

import functools
from collections.abc import Callable

import attrs
import h11
import pytest
import trio

from actors.webhooks import WebhookConfig

#: The dispatcher's timings, shrunk for the tests that run it alone.
FAST = WebhookConfig(
    timeout_s=0.5,
    initial_backoff_s=0.02,
    max_backoff_s=0.1,
    max_age_s=60,
    poll_interval_s=0.05,
    concurrency=4,
    lease_s=5,
)
#: The secret of the service tests' webhooks (`secret_env = "HOOK_SECRET"`), and their timings.
HOOK_SECRET = "hook-secret"
ENVIRON = {"HOOK_SECRET": HOOK_SECRET}
SERVICE_FAST = WebhookConfig(
    timeout_s=0.5, initial_backoff_s=0.05, max_backoff_s=0.2, max_age_s=60,
    poll_interval_s=0.05, lease_s=5,
)


@attrs.frozen
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None  # None: the receiver hung and never answered

    @property
    def event_id(self) -> str:
        return self.headers["x-orderdesk-event-id"]


@attrs.define(eq=False)
class Receiver:
    """An HTTP endpoint under test control; paths select behaviour per URL."""

    requests: list[Received] = attrs.field(factory=list)
    fail: dict[str, int] = attrs.field(factory=dict)  # path -> answers of 500 still to give
    hang: set[str] = attrs.field(factory=set)
    lose_ack_every: int = 0  # process the event, then answer 500 (every nth request)
    processed: set[str] = attrs.field(factory=set)  # event_ids the "application" handled once
    port: int = 0
    _changed: trio.Event = attrs.field(factory=trio.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, predicate: Callable[[Receiver], bool]) -> None:
        while not predicate(self):
            await self._changed.wait()

    def _record(self, received: Received) -> None:
        self.requests.append(received)
        self._changed.set()
        self._changed = trio.Event()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1")
            )
            self.port = listeners[0].socket.getsockname()[1]
            task_status.started()

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request: h11.Request | None = None
                body = b""
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await stream.receive_some(65536))
                    elif isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:  # ConnectionClosed
                        return
                assert request is not None
                path = request.target.decode()
                headers = {k.decode().lower(): v.decode() for k, v in request.headers}
                if path in self.hang:
                    self._record(Received(path, headers, body, None))
                    while await stream.receive_some(65536):  # until the client gives up
                        pass
                    return
                status = self._status(path, headers)
                self._record(Received(path, headers, body, status))
                response = h11.Response(status_code=status, headers=[("content-length", "2")])
                data = conn.send(response)
                data += conn.send(h11.Data(data=b"ok")) + conn.send(h11.EndOfMessage())
                await stream.send_all(data)
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return

    def _status(self, path: str, headers: dict[str, str]) -> int:
        if self.fail.get(path, 0) > 0:
            self.fail[path] -= 1
            return 500
        self.processed.add(headers["x-orderdesk-event-id"])  # idempotent: dedupe by event_id
        if self.lose_ack_every and len(self.requests) % self.lose_ack_every == 0:
            return 500
        return 200


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> Receiver:
    r = Receiver()
    await nursery.start(r.serve)
    return r


@attrs.define(eq=False)
class PortReceiver(Receiver):
    """The test receiver on a port chosen before it listens (so it can start late)."""

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(trio.serve_tcp, self._handle, self.port, host="127.0.0.1")
            )
            task_status.started()


def hooks_for(receiver: Receiver) -> dict[str, str]:
    url = receiver.url("/hook")
    return {"primary": f'webhooks = [{{ url = "{url}", secret_env = "HOOK_SECRET" }}]'}
