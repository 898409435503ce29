"""Browser sessions behind the session cookie: opaque ids mapped to an identity, in memory.

Signing in on orderdesk's page (`POST /session` with a bearer token) opens one; its id is the
cookie's value, never the token. A session is good for `ttl_s` seconds, the book holds at most
`max_sessions` (the oldest goes first), and every websocket a session opened is tracked so that
ending the session (sign-out, a rotation of the token it was opened with, expiry, eviction)
closes those sockets too (close code 4401, reason `SESSION_ENDED`). Being in memory, a restart
ends every session: the page signs in again with its token.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import attrs

from .auth import Identity

__all__ = ["SESSION_ENDED", "Closable", "Session", "SessionBook", "cookie_name"]

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
    expires_at: float


class SessionBook:
    """The live sessions of one app, oldest first; expired ones are dropped as we go."""

    def __init__(
        self,
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_sessions: int = 10_000,
    ) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._max = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._sockets: dict[str, set[Closable]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, identity: Identity) -> Session:
        now = self._clock()
        self._purge(now)
        while len(self._sessions) >= self._max:
            self._end(next(iter(self._sessions)))
        session = Session(secrets.token_urlsafe(32), identity, now + self.ttl_s)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> Session | None:
        """The live session of that id; None when unknown, ended or expired."""
        self._purge(self._clock())  # expired sessions end here, closing their sockets
        return self._sessions.get(session_id)

    def attach(self, session_id: str, socket: Closable) -> bool:
        """Track a socket the session opened; False (socket not tracked) if it has ended."""
        if self.get(session_id) is None:
            return False
        self._sockets.setdefault(session_id, set()).add(socket)
        return True

    def detach(self, session_id: str, socket: Closable) -> None:
        sockets = self._sockets.get(session_id)
        if sockets is not None:
            sockets.discard(socket)

    def end(self, session_id: str) -> Session | None:
        """Sign-out: the session is gone and its sockets are closed; the session, if it was."""
        return self._end(session_id)

    def end_for(self, identity: Identity) -> int:
        """A rotated token: every session opened with it ends. How many did."""
        ended = [sid for sid, s in self._sessions.items() if s.identity == identity]
        for sid in ended:
            self._end(sid)
        return len(ended)

    def _end(self, session_id: str) -> Session | None:
        session = self._sessions.pop(session_id, None)
        for socket in self._sockets.pop(session_id, ()):
            socket.close(SESSION_ENDED)
        return session

    def _purge(self, now: float) -> None:
        while self._sessions:  # one lifetime for all: the oldest expires first
            first = next(iter(self._sessions.values()))
            if first.expires_at > now:
                break
            self._end(first.id)
