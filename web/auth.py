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
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import attrs

from store import TokenRotation
from web.settings import Settings

from .expiring import ExpiringBook

__all__ = [
    "ADMIN",
    "Authenticator",
    "Identity",
    "Ticket",
    "TicketBook",
    "Tickets",
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
    """Resolves a presented token to an `Identity`, built once from the settings; the
    rotations kept in the store (`apply`) give client tokens their values since."""

    def __init__(self, settings: Settings) -> None:
        entries: list[tuple[bytes, Identity]] = []
        if settings.admin_token:
            entries.append((_digest(settings.admin_token), ADMIN))
        for account in settings.accounts:
            for token in account.tokens:
                if token.value:
                    entries.append((_digest(token.value), Identity(token.name, account.id)))
        self._entries = tuple(entries)
        # What the settings give each client token: a rotation replaced that, or a newer file.
        self._configured = {i: d.hex() for d, i in entries if not i.admin}
        # Prometheus' token reads /metrics and nothing else: it is no Identity.
        self._metrics = _digest(settings.metrics_token) if settings.metrics_token else None

    def is_metrics_token(self, token: str | None) -> bool:
        if not token or self._metrics is None:
            return False
        return hmac.compare_digest(_digest(token), self._metrics)

    def knows(self, identity: Identity) -> bool:
        """Whether a client token (not the admin's) stands for `identity`: one `rotate` takes."""
        return not identity.admin and any(i == identity for _, i in self._entries)

    def rotation(self, identity: Identity, token: str) -> TokenRotation | None:
        """The record of giving `identity`'s token the value `token` (nothing changes until
        it is applied). None when no token stands for `identity` or the value is in use."""
        if not self.knows(identity):
            return None
        if self.identify(token) not in (None, identity) or self.is_metrics_token(token):
            return None
        return TokenRotation(identity.account or "", identity.name, _digest(token).hex(),
                             self._configured[identity], time.time())

    def apply(self, rotations: Iterable[TokenRotation]) -> int:
        """Give client tokens the values these rotations (the store's) gave them: the old value
        is refused from then on. A rotation of a value the settings no longer give is passed
        over (a new value in orderdesk.toml wins). How many tokens changed."""
        digests = {Identity(r.name, r.account): bytes.fromhex(r.digest) for r in rotations
                   if self._configured.get(Identity(r.name, r.account)) == r.replaced}
        changed = sum(1 for d, i in self._entries if i in digests and digests[i] != d)
        if changed:
            self._entries = tuple((digests.get(i, d), i) for d, i in self._entries)
        return changed

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
class Ticket:
    """What a ticket stands for: who, for which account, and the browser session (if any)
    that asked for it, so that ending the session closes the socket the ticket opened."""

    identity: Identity
    account: str
    session: str | None = attrs.field(default=None, repr=False)


class Tickets(Protocol):
    """What the web layer asks of a ticket book: `TicketBook` in memory, or the one kept in
    Redis with `[cluster]` (supervision/shared_books.py), which may raise `ServiceUnavailable`
    when Redis does not answer."""

    @property
    def ttl_s(self) -> float: ...

    async def issue(self, identity: Identity, account: str, session: str | None = None) -> str:
        ...

    async def redeem(self, ticket: str) -> Ticket | None: ...

    async def drop_for(self, identity: Identity) -> None: ...


class TicketBook:
    """Single-use websocket tickets of one process, bounded in number; expired ones are
    dropped as we go."""

    def __init__(
        self,
        ttl_s: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_tickets: int = 10_000,
    ) -> None:
        self._book = ExpiringBook[Ticket](ttl_s, clock=clock, max_entries=max_tickets)

    @property
    def ttl_s(self) -> float:
        return self._book.ttl_s

    def __len__(self) -> int:
        return len(self._book)

    async def issue(self, identity: Identity, account: str, session: str | None = None) -> str:
        return self._book.add(Ticket(identity, account, session))

    async def redeem(self, ticket: str) -> Ticket | None:
        """What the ticket stands for, once; None if unknown, used or expired."""
        return self._book.pop(ticket)

    async def drop_for(self, identity: Identity) -> None:
        """A rotated token: the tickets issued to it are void."""
        self._book.drop_if(lambda t: t.identity == identity)
