"""The login stand-in's request tokens (login.py hands them out, `POST /session/token` takes
them back): single use, each naming its account, valid a few minutes."""

from __future__ import annotations

import secrets

import trio

#: How long a request token can be exchanged (Kite: "a few minutes").
REQUEST_TOKEN_TTL_S = 300.0


class RequestTokens:
    """Request tokens handed out by the login stand-in: each names its account, once."""

    def __init__(self, ttl_s: float = REQUEST_TOKEN_TTL_S) -> None:
        self._ttl_s = ttl_s
        self._pending: dict[str, tuple[str, float]] = {}

    def issue(self, account: str) -> str:
        now = trio.current_time()
        self._pending = {t: v for t, v in self._pending.items() if v[1] > now}
        token = secrets.token_urlsafe(24)
        self._pending[token] = (account, now + self._ttl_s)
        return token

    def account_of(self, token: str) -> str | None:
        """The account a live token was issued for (None: unknown, used or expired)."""
        found = self._pending.get(token)
        if found is None or found[1] <= trio.current_time():
            return None
        return found[0]

    def consume(self, token: str) -> None:
        self._pending.pop(token, None)

    def reset(self) -> None:
        self._pending.clear()
