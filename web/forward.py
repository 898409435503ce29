"""[cluster]: a request for an account another node owns is executed by the owner.

Every write route of the account API (batch, order, modify, cancel, exit, kill) and the reads
only the owner can answer (its book, positions, a batch in flight, basket margin) are
`OWNER_ROUTES`. On a node that does not own the account, the client's own credentials are
checked first (401/403/404 as anywhere), then the request goes as it came (method, path, query,
body, `Authorization`, `Idempotency-Key`, the correlation id) to the owner's advertised address
under the internal route (internal.py) with the cluster's secret, and the owner's answer comes
back as it is (status, body, `Retry-After`). The owner checks the client's credentials again.

What cannot be forwarded answers as the non-owner did before forwarding existed: 503
`unavailable` with `Retry-After` (no owner known: a takeover under way; the owner does not
accept connections). A forwarded request that finds its receiver no longer owner is refused the
same way, never forwarded again (no loops); that refusal (`NOT_OWNER_HEADER`: nothing was done)
and a connect refused make the sender ask Redis who owns the account now and send it there once
(the owner is remembered between requests: most forwards cost no Redis round trip).

A forward whose owner fails after the request went out (the connection dropped, or the owner
lost its lease while the client waited: the watch below) has an unknown outcome: it is sent
again, once, to the next owner only when it carries an `Idempotency-Key` (the owner's store
answers a retry with the first result and places nothing twice); without a key nothing is
re-sent: 502 `owner_failed` says the outcome is unknown.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import attrs
import httpx
import trio
from quart import Quart, Request, Response, g, request

from actors.errors import Unavailable

from .deps import current_deps
from .errors import ApiError, Forbidden, NotFound
from .internal import CREDENTIAL_HEADER, INTERNAL_PREFIX, credential_ok, forwarded
from .middleware import CORRELATION_HEADER, current_correlation_id
from .routes import require_account

__all__ = ["OWNER_ROUTES", "Forwarder", "Owner", "OwnerLookup", "install_forwarding",
           "open_forwarder"]

#: The endpoints the owner answers, whichever node the client asked.
OWNER_ROUTES = frozenset({
    "orders.submit_batch", "orders.get_batch", "orders.basket_margin", "orders.place_order",
    "orders.cancel_order", "orders.modify_order", "orders.kill", "orders.exit_position",
    "http.account_orders", "http.account_positions",
})
#: What of the client's request the owner needs; what of the owner's answer the client gets
#: (the correlation id and timing are this node's, the same id the owner used).
_REQUEST_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "Accept")
_RESPONSE_HEADERS = ("Content-Type", "Retry-After", "Cache-Control", "Location")
#: Set on the 503 of a forwarded request its receiver does not own: refused before anything
#: was done, so the sender may ask who owns the account now and send it there.
NOT_OWNER_HEADER = "X-Orderdesk-Not-Owner"
#: A forward that failed before the request went out: nothing reached the owner.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@attrs.frozen
class Owner:
    node: str
    address: str  # its advertised base URL, http://host:port


class OwnerLookup(Protocol):
    """Where an account is owned (supervision/owner_finder.py, from the Redis lease)."""

    def local(self, account: str) -> bool: ...
    async def find(self, account: str, *, fresh: bool = False) -> Owner | None: ...
    async def still_holds(self, account: str, node: str) -> bool: ...


class OwnerFailed(ApiError):
    """502: the owner failed after the request reached it; its outcome is unknown."""

    status, code = 502, "owner_failed"


@attrs.frozen
class _Lost:
    """The owner failed after the request went out (`why`)."""

    why: str


class Forwarder:
    """Sends requests for accounts owned elsewhere to their owner, on one pooled HTTP client."""

    def __init__(self, client: httpx.AsyncClient, owners: OwnerLookup, secret: str,
                 watch_s: float) -> None:
        self._client = client
        self._owners = owners
        self._secret = secret
        self._watch_s = watch_s  # how often a long forward checks that the owner still owns

    def local(self, account: str) -> bool:
        return self._owners.local(account)

    async def forward(self, account: str, incoming: Request, correlation_id: str) -> Response:
        """The owner's answer to `incoming`, or Unavailable / OwnerFailed."""
        body = await incoming.get_data(cache=True, as_text=False)
        headers = {name: incoming.headers[name] for name in _REQUEST_HEADERS
                   if name in incoming.headers}
        headers.update({CORRELATION_HEADER: correlation_id, CREDENTIAL_HEADER: self._secret,
                        "Accept-Encoding": "identity"})
        keyed = "Idempotency-Key" in headers
        tried: str | None = None
        fresh = False  # the owner as last found, until it says otherwise
        while True:
            owner = await self._owners.find(account, fresh=fresh)
            if owner is None or owner.node == tried:
                if tried is not None:
                    raise Unavailable(
                        f"the owner of account {account!r} failed while answering; no other "
                        "node owns it yet: retry with the same Idempotency-Key (the first "
                        "result is returned, nothing is placed twice)")
                raise Unavailable(f"no node owns account {account!r} now (a takeover may be "
                                  "under way); retry shortly")
            path = incoming.scope.get("raw_path") or incoming.path.encode()
            query = incoming.scope.get("query_string") or b""
            url = owner.address.rstrip("/") + INTERNAL_PREFIX + path.decode("latin-1") + (
                "?" + query.decode("latin-1") if query else "")
            outcome = await self._exchange(account, owner, self._client.build_request(
                incoming.method, url, content=body, headers=headers))
            if isinstance(outcome, httpx.Response):
                if outcome.headers.get(NOT_OWNER_HEADER) and not fresh:
                    fresh = True  # it refused before doing anything: ask who owns it now
                    continue
                return _relay(outcome)
            if outcome is None:
                if not fresh:  # nothing reached it: ask who owns it now
                    fresh = True
                    continue
                raise Unavailable(f"the owner of account {account!r} (node {owner.node}) does "
                                  "not answer; retry shortly")
            if tried is not None:  # sent again once already
                raise Unavailable(
                    f"the owners of account {account!r} failed twice while answering: retry "
                    "with the same Idempotency-Key (the first result is returned, nothing is "
                    "placed twice)")
            if not keyed:
                raise OwnerFailed(
                    f"the owner of account {account!r} (node {owner.node}) failed while "
                    f"answering ({outcome.why}): the outcome is unknown; look the orders up "
                    "before trying again (with an Idempotency-Key a retry is safe)")
            tried, fresh = owner.node, True  # once more, to the next owner, if known already

    async def _exchange(self, account: str, owner: Owner,
                        outgoing: httpx.Request) -> httpx.Response | _Lost | None:
        """The owner's response; None when nothing reached it; `_Lost` when it failed after
        the request went out (the connection, or its lease while the client waited)."""
        lost: _Lost | None = None
        with trio.CancelScope() as sending:
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    nonlocal lost
                    while True:
                        await trio.sleep(self._watch_s)
                        if not await self._owners.still_holds(account, owner.node):
                            lost = _Lost("it lost the account")
                            sending.cancel()
                            return

                nursery.start_soon(watch)
                try:
                    return await self._client.send(outgoing)
                except _NOT_SENT:
                    return None
                except httpx.TransportError as exc:
                    return _Lost(type(exc).__name__)
                finally:
                    nursery.cancel_scope.cancel()
        return lost or _Lost("cancelled")


def _relay(answer: httpx.Response) -> Response:
    relayed = Response(answer.content, status=answer.status_code)
    for name in _RESPONSE_HEADERS:
        if name in answer.headers:
            relayed.headers[name] = answer.headers[name]
    return relayed


@asynccontextmanager
async def open_forwarder(owners: OwnerLookup, secret: str, timeout_s: float,
                         watch_s: float) -> AsyncIterator[Forwarder]:
    """A `Forwarder` whose connections to the owners live for the block. A connect that
    takes over a second finds the owner down (its address refuses, or nothing answers)."""
    timeout = httpx.Timeout(timeout_s, connect=1.0, pool=1.0)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
        yield Forwarder(client, owners, secret, watch_s)


def install_forwarding(app: Quart) -> None:
    """Check the internal route's credential, and send requests of `OWNER_ROUTES` for accounts
    another node owns to that node (after the request hooks and the Origin check)."""
    deps = app.deps  # type: ignore[attr-defined]
    metrics = deps.metrics
    secret = deps.settings.cluster.secret if deps.settings.cluster is not None else ""

    @app.before_request
    async def _route_to_owner() -> Response | None:
        inbound = forwarded(request.scope)
        if inbound:  # before anything else: the route is the cluster's, not the clients'
            if not credential_ok(request.headers.get(CREDENTIAL_HEADER), secret):
                metrics.forwards_received.labels("refused").inc()
                raise Forbidden("the internal route takes requests from the cluster's nodes "
                                "only")
            if request.endpoint not in OWNER_ROUTES:
                raise NotFound("no such internal route")
            metrics.forwards_received.labels("accepted").inc()
        forwarder = current_deps().forwarder
        if forwarder is None or request.endpoint not in OWNER_ROUTES:
            return None
        account = (request.view_args or {})["account_id"]
        require_account(account)  # the client's own credentials, here first
        if forwarder.local(account):
            return None
        if inbound:
            g.not_owner = True
            raise Unavailable(f"account {account!r} is no longer owned by this node; retry "
                              "shortly")
        route = request.url_rule.rule if request.url_rule is not None else "?"
        started = time.perf_counter()
        try:
            response = await forwarder.forward(account, request, current_correlation_id())
        except (Unavailable, OwnerFailed) as exc:
            reason = "owner_failed" if isinstance(exc, OwnerFailed) else "unavailable"
            metrics.forward_errors.labels(route, reason).inc()
            raise
        metrics.forwards.labels(request.method, route, str(response.status_code)).inc()
        metrics.forward_duration.labels(request.method, route).observe(
            time.perf_counter() - started)
        return response

    @app.after_request
    async def _mark_not_owner(response: Response) -> Response:
        if g.get("not_owner"):
            response.headers[NOT_OWNER_HEADER] = "1"
        return response
