"""[cluster]: the internal route by which one node hands a client's request to the owner.

A node that does not own an account sends the request to the owner's advertised address under
`INTERNAL_PREFIX` (`/internal/forward/accounts/...`) with the cluster's shared secret in
`CREDENTIAL_HEADER`. `internal_scope` (called by the app for every HTTP request, before routing)
strips the prefix and marks the request as forwarded, so the owner routes it to the public handler
as if the client had sent it, and the forwarding hook (forward.py) checks the credential before
anything else runs. Kept free of the app's imports: deps.py calls it.
"""

from __future__ import annotations

import hmac
from typing import Any

__all__ = ["CREDENTIAL_HEADER", "INTERNAL_PREFIX", "credential_ok", "forwarded", "internal_scope"]

INTERNAL_PREFIX = "/internal/forward"
CREDENTIAL_HEADER = "X-Orderdesk-Internal"
#: The scope key that marks a request received on the internal route.
_FORWARDED = "orderdesk.forwarded"


def internal_scope(scope: dict[str, Any]) -> dict[str, Any]:
    """`scope` itself, or for a request on the internal route a copy without the prefix and
    marked `forwarded` (what it asks for is routed as usual)."""
    path = scope.get("path", "")
    if scope.get("type") != "http" or not path.startswith(INTERNAL_PREFIX + "/"):
        return scope
    rest = path[len(INTERNAL_PREFIX):]
    raw = scope.get("raw_path") or path.encode()
    return {**scope, "path": rest, "raw_path": raw[len(INTERNAL_PREFIX):], _FORWARDED: True}


def forwarded(scope: dict[str, Any]) -> bool:
    """Whether the request came in on the internal route (another node forwarded it)."""
    return bool(scope.get(_FORWARDED))


def credential_ok(given: str | None, secret: str) -> bool:
    """The shared secret shown, compared in constant time; none configured: nothing passes."""
    if not secret or given is None:
        return False
    return hmac.compare_digest(given.encode(), secret.encode())
