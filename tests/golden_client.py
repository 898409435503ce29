"""The recording client of the golden record (tests/test_golden.py): real HTTP and websocket
requests to a running service, each answer kept as one masked case.

A case says what was sent (method, path, body), which rule of the app's url_map answered it,
the status, the headers a client relies on, and the body: JSON masked and with the encoding that
reproduces its bytes (see tests/golden_masking.py), Prometheus text as its lines with the sample
values masked, anything else (the page, its scripts) as its length and SHA-256. A websocket case
keeps every message in order, whether it came alone or in a coalesced frame (a JSON array: how
messages are grouped into frames depends on timing), and the close code and reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio
import trio_websocket
from werkzeug.exceptions import HTTPException

from supervision.service import Running
from tests.golden_masking import Masker, encoding_of, render
from tests.ws_contract import check_message

__all__ = ["Recorder", "Socket"]

#: The response headers the record keeps (Date, X-Process-Time, X-Correlation-ID vary).
HEADERS = ("content-type", "location", "retry-after", "allow", "www-authenticate")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) \S+$")
WAIT_S = 10
_COOKIE_VALUE = re.compile(r"^([^=]+=)([^;]*)")
_EXPIRES = re.compile(r"Expires=[^;]*")
SMALL_TEXT = 2048  # longer text (the page, its scripts) is kept as length and SHA-256


class Recorder:
    """Sends requests to `running` and keeps each answer as the case `name`."""

    def __init__(self, running: Running) -> None:
        self.running = running
        self.masker = Masker()
        self.cases: dict[str, dict[str, Any]] = {}
        self._http = httpx.AsyncClient(base_url=f"http://{running.web_bind}", timeout=30)

    @property
    def cookies(self) -> httpx.Cookies:
        """The cookies the recorder's client keeps (the session cookie once signed in)."""
        return self._http.cookies

    async def aclose(self) -> None:
        await self._http.aclose()

    def route(self, method: str, path: str, *, websocket: bool = False) -> str | None:
        """The url_map rule that answers `method path` ("POST /accounts/<account_id>/kill")."""
        adapter = self.running.app.url_map.bind("localhost")
        try:
            rule, _ = adapter.match(path.split("?")[0], method, return_rule=True,
                                    websocket=websocket)
        except HTTPException:
            return None
        return f"{'WS' if websocket else method} {rule.rule}"

    def _keep(self, name: str, case: dict[str, Any]) -> None:
        assert name not in self.cases, f"case {name!r} recorded twice"
        self.cases[name] = case

    async def http(
        self,
        name: str,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        unordered: str | None = None,
    ) -> httpx.Response:
        """Send one request and keep its answer as the case `name`.

        `unordered` names a list of the body (by key) whose order is the order in which
        updates happened to arrive (the book of an account with concurrent legs): it is kept
        sorted by masked order id.
        """
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            content = json.dumps(json_body).encode()
            sent.setdefault("Content-Type", "application/json")
        with trio.fail_after(WAIT_S * 3):
            response = await self._http.request(method, path, content=content, headers=sent)
        case: dict[str, Any] = {
            "request": f"{method} {self.masker.text(path)}",
            "route": self.route(method, path),
        }
        if content is not None:
            case["sent"] = self.masker.text(content.decode("utf-8", "replace"))
        case["status"] = response.status_code
        case["headers"] = {
            h: self.masker.text(response.headers[h]) for h in HEADERS if h in response.headers
        }
        if "set-cookie" in response.headers:  # the session cookie: its attributes, not its id
            cookie = _COOKIE_VALUE.sub(lambda m: m.group(1) + ("<session>" if m.group(2) else ""),
                                       response.headers["set-cookie"], count=1)
            case["headers"]["set-cookie"] = _EXPIRES.sub("Expires=<at>", cookie)
        case.update(self._body(response))
        if unordered is not None:
            items = case["body"][unordered]
            items.sort(key=lambda item: int(item["order_id"].strip("<>").split(":")[1]))
        self._keep(name, case)
        return response

    def _body(self, response: httpx.Response) -> dict[str, Any]:
        kind = response.headers.get("content-type", "")
        if not response.content:
            return {"body": None}
        if kind.startswith("application/json"):
            return self._json(response.text)
        if kind.startswith("text/plain") and "version=" in kind:  # Prometheus
            return {"lines": [_SAMPLE.sub(r"\1 <value>", line)
                              for line in response.text.splitlines()]}
        if kind.startswith("text/") and len(response.content) <= SMALL_TEXT:
            return {"text": self.masker.text(response.text)}
        return {"length": len(response.content),
                "sha256": hashlib.sha256(response.content).hexdigest()}

    def _json(self, text: str) -> dict[str, Any]:
        value = json.loads(text)
        encoding = encoding_of(text, value)
        if encoding is None:
            return {"text": self.masker.text(text)}
        return {"encoding": encoding, "body": self.masker.value(value)}

    @asynccontextmanager
    async def websocket(
        self, name: str, path: str, *, token: str | None = None
    ) -> AsyncIterator[Socket]:
        """A websocket client of the case `name`; leaving the block closes it (code 1000)."""
        headers = [(b"Authorization", f"Bearer {token}".encode())] if token else []
        case: dict[str, Any] = {
            "request": f"WS {self.masker.text(path)}",
            "route": self.route("GET", path, websocket=True),
            "sent": [],
            "messages": [],
        }
        async with trio.open_nursery() as nursery:
            with trio.fail_after(WAIT_S):
                ws = await trio_websocket.connect_websocket_url(
                    nursery, f"ws://{self.running.web_bind}{path}", extra_headers=headers)
            socket = Socket(self.masker, ws, case)
            try:
                yield socket
            finally:
                socket.note_close()
                if not ws.closed:
                    await ws.aclose()
            self._keep(name, case)


class Socket:
    """One websocket client of a case: connect, send, read messages until a condition, close."""

    def __init__(
        self, masker: Masker, ws: trio_websocket.WebSocketConnection, case: dict[str, Any]
    ) -> None:
        self.masker, self.ws, self.case = masker, ws, case
        self.messages: list[dict[str, Any]] = []  # parsed, unmasked: what the scenario reads
        self._pending: list[dict[str, Any]] = []

    async def send(self, message: str | bytes) -> None:
        self.case["sent"].append(message if isinstance(message, str) else f"<{len(message)} bytes>")
        await self.ws.send_message(message)

    async def until(self, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Read messages (recording each) until one satisfies `done`; that one."""
        with trio.fail_after(WAIT_S):
            while True:
                message = await self._next()
                if done(message):
                    return message

    async def closed(self) -> None:
        """Wait for the server to close the socket (recording what it sent before)."""
        with trio.fail_after(WAIT_S):
            try:
                while True:
                    await self._next()
            except trio_websocket.ConnectionClosed:
                self.note_close()

    def note_close(self) -> None:
        """Record how the server closed the socket, if it did."""
        reason = self.ws.closed
        if reason is not None and "close" not in self.case:
            self.case["close"] = {"code": reason.code, "reason": reason.reason}

    async def _next(self) -> dict[str, Any]:
        while not self._pending:
            frame = await self.ws.get_message()
            for value, encoding in _messages(str(frame)):
                check_message(value)
                self.case["messages"].append(
                    {"encoding": encoding, "body": self.masker.value(value)})
                self._pending.append(value)
        message = self._pending.pop(0)
        self.messages.append(message)
        return message


def _messages(frame: str) -> list[tuple[Any, str | None]]:
    """The messages of one frame with the encoding of each: one, or a coalesced JSON array."""
    value = json.loads(frame)
    whole = encoding_of(frame, value)
    if not frame.startswith("[") or not isinstance(value, list):
        return [(value, whole)]
    found, at = [], 1
    for item in value:
        encoding = next((e for e in ("compact", "spaced")
                         if frame.startswith(render(item, e), at)), None)
        found.append((item, encoding))
        at += len(render(item, encoding or "compact")) + 1
    return found
