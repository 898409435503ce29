"""Browser sessions behind the session cookie: opaque ids mapped to an identity, in memory.

Signing in on orderdesk's page (`POST /session` with a bearer token) opens one; its id is the
cookie's value, never the token. A session is good for `ttl_s` seconds, the book holds at most
`max_sessions` (the oldest goes first), and every websocket a session opened is tracked so that
ending the session (sign-out, a rotation of the token it was opened with, expiry, eviction)
closes those sockets too (close code 4401, reason `SESSION_ENDED`). Being in memory, a restart
ends every session: the page signs in again with its token. With `[cluster]` the sessions live
in Redis instead (supervision/shared_books.py, the same `Sessions` face), so any node takes the
cookie and ending a session on one node closes its sockets on every node.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import attrs

from .auth import Identity
from .expiring import ExpiringBook

__all__ = [
    "SESSION_ENDED",
    "Closable",
    "Session",
    "SessionBook",
    "SessionSockets",
    "Sessions",
    "cookie_name",
]

#: The close reason of a socket whose session ended; web/ws.py sends it with code 4401.
SESSION_ENDED = "session ended"
_COOKIE = "orderdesk_session"


def cookie_name(secure: bool) -> str:
    """`__Host-orderdesk_session` over TLS (the browser then insists on Secure, Path=/ and no
    Domain), the plain name over plain HTTP, where a `__Host-` cookie cannot be set."""
    return f"__Host-{_COOKIE}" if secure else _COOKIE


class Closable(Protocol):
    """What a session tracks of a socket it opened: an order subscription."""

    def close(self, reason: str) -> None: ...


@attrs.frozen
class Session:
    id: str = attrs.field(repr=False)
    identity: Identity


class Sessions(Protocol):
    """What the web layer asks of a session book (the in-memory `SessionBook`, or the Redis
    one with `[cluster]`, which may raise `ServiceUnavailable` when Redis does not answer).
    `attach`/`detach` are this process's sockets only, hence never wait."""

    @property
    def ttl_s(self) -> float: ...

    async def open(self, identity: Identity) -> Session: ...

    async def get(self, session_id: str) -> Session | None: ...

    def attach(self, session_id: str, socket: Closable) -> bool: ...

    def detach(self, session_id: str, socket: Closable) -> None: ...

    async def end(self, session_id: str) -> None: ...

    async def end_for(self, identity: Identity) -> int: ...


class SessionSockets:
    """The sockets this process opened per session, closed together when the session ends."""

    def __init__(self) -> None:
        self._sockets: dict[str, set[Closable]] = {}

    def __len__(self) -> int:
        return len(self._sockets)

    def sessions(self) -> list[str]:
        """The sessions with a socket open here."""
        return list(self._sockets)

    def attach(self, session_id: str, socket: Closable) -> None:
        self._sockets.setdefault(session_id, set()).add(socket)

    def detach(self, session_id: str, socket: Closable) -> None:
        sockets = self._sockets.get(session_id)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self._sockets[session_id]

    def close(self, session_id: str) -> None:
        """The session ended: close its sockets (4401 `SESSION_ENDED`)."""
        for socket in self._sockets.pop(session_id, ()):
            socket.close(SESSION_ENDED)


class SessionBook:
    """The live sessions of one app and the sockets each opened."""

    def __init__(
        self,
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_sessions: int = 10_000,
    ) -> None:
        self._sockets = SessionSockets()
        self._book = ExpiringBook[Identity](
            ttl_s, clock=clock, max_entries=max_sessions, id_bytes=32,
            on_drop=lambda session_id, _: self._sockets.close(session_id),
        )

    @property
    def ttl_s(self) -> float:
        return self._book.ttl_s

    def __len__(self) -> int:
        return len(self._book)

    async def open(self, identity: Identity) -> Session:
        return Session(self._book.add(identity), identity)

    async def get(self, session_id: str) -> Session | None:
        """The live session of that id; None when unknown, ended or expired (expired sessions
        end here, closing their sockets)."""
        return self._live(session_id)

    def _live(self, session_id: str) -> Session | None:
        identity = self._book.get(session_id)
        return None if identity is None else Session(session_id, identity)

    def attach(self, session_id: str, socket: Closable) -> bool:
        """Track a socket the session opened; False (socket not tracked) if it has ended."""
        if self._live(session_id) is None:
            return False
        self._sockets.attach(session_id, socket)
        return True

    def detach(self, session_id: str, socket: Closable) -> None:
        self._sockets.detach(session_id, socket)

    async def end(self, session_id: str) -> None:
        """Sign-out: the session is gone and its sockets are closed."""
        self._book.pop(session_id)
        self._sockets.close(session_id)

    async def end_for(self, identity: Identity) -> int:
        """A rotated token: every session opened with it ends. How many did."""
        ended = self._book.drop_if(lambda i: i == identity)
        for session_id in ended:
            self._sockets.close(session_id)
        return len(ended)
