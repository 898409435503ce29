"""Who is calling: per-account bearer tokens, the admin token, single-use websocket tickets, and
the browser Origin check.

Tokens are compared in constant time against every configured token (no early exit that would
tell which prefix matched). A token's *name* is the identity logs and audit show; its value is
never logged. Tickets are for browsers, which cannot set headers on a websocket: single-use,
bound to one account, valid for `ttl_s` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

import attrs

from web.settings import Settings

__all__ = [
    "ADMIN",
    "Authenticator",
    "Identity",
    "TicketBook",
    "bearer_token",
    "origin_allowed",
]


@attrs.frozen
class Identity:
    """An authenticated caller: `account` None means the admin (every account, `/admin/*`)."""

    name: str
    account: str | None

    @property
    def admin(self) -> bool:
        return self.account is None

    def may_access(self, account_id: str) -> bool:
        return self.account is None or self.account == account_id


ADMIN = Identity("admin", None)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class Authenticator:
    """Resolves a presented token to an `Identity`, built once from the settings."""

    def __init__(self, settings: Settings) -> None:
        entries: list[tuple[bytes, Identity]] = []
        if settings.admin_token:
            entries.append((_digest(settings.admin_token), ADMIN))
        for account in settings.accounts:
            for token in account.tokens:
                if token.value:
                    entries.append((_digest(token.value), Identity(token.name, account.id)))
        self._entries = tuple(entries)
        # Prometheus' token reads /metrics and nothing else: it is no Identity.
        self._metrics = _digest(settings.metrics_token) if settings.metrics_token else None

    def is_metrics_token(self, token: str | None) -> bool:
        if not token or self._metrics is None:
            return False
        return hmac.compare_digest(_digest(token), self._metrics)

    def identify(self, token: str | None) -> Identity | None:
        if not token:
            return None
        presented = _digest(token)
        found: Identity | None = None
        for digest, identity in self._entries:  # every entry, always: constant time
            if hmac.compare_digest(presented, digest) and found is None:
                found = identity
        return found


def bearer_token(authorization: str | None) -> str | None:
    """The token of `Authorization: Bearer <token>`; None when absent or another scheme."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def origin_allowed(
    origin: str | None, allowed: Iterable[str], host: str | None = None
) -> bool:
    """No Origin header: not a browser, allowed. Otherwise the page must be our own (same
    origin as the Host it asked, e.g. the built-in page) or configured exactly."""
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    if host and origin.split("://", 1)[-1] == host.strip().lower():
        return True
    return any(origin == a.strip().rstrip("/").lower() for a in allowed)


@attrs.frozen
class _Ticket:
    identity: Identity
    account: str
    expires_at: float


class TicketBook:
    """Single-use websocket tickets, bounded in number; expired ones are dropped as we go."""

    def __init__(
        self,
        ttl_s: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_tickets: int = 10_000,
    ) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._max = max_tickets
        self._tickets: OrderedDict[str, _Ticket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tickets)

    def issue(self, identity: Identity, account: str) -> str:
        now = self._clock()
        self._purge(now)
        while len(self._tickets) >= self._max:
            self._tickets.popitem(last=False)
        ticket = secrets.token_urlsafe(24)
        self._tickets[ticket] = _Ticket(identity, account, now + self.ttl_s)
        return ticket

    def redeem(self, ticket: str) -> tuple[Identity, str] | None:
        """(identity, account it was issued for), once; None if unknown, used or expired."""
        entry = self._tickets.pop(ticket, None)
        if entry is None or self._clock() >= entry.expires_at:
            return None
        return entry.identity, entry.account

    def _purge(self, now: float) -> None:
        while self._tickets:
            first = next(iter(self._tickets.values()))
            if first.expires_at > now:
                break
            self._tickets.popitem(last=False)
