"""Loading a new broker access token into a running account, and the audit entries of operator
actions: `PUT /admin/accounts/{id}/credentials` and the daily login's callback do the same."""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import trio

from brokers.base import BrokerError, TokenExpired
from store import AuditEntry

from .actor_status import actor_status
from .deps import current_deps
from .errors import ServiceUnavailable

__all__ = ["TokenKeeper", "TokensNotShared", "broker_accepts", "load_access_token",
           "record_audit"]

log = logging.getLogger("web.credentials")



class TokensNotShared(Exception):
    """[cluster]: a token that could not be kept for the other nodes (no key, store down)."""


class TokenKeeper(Protocol):
    """[cluster]: keeps each access token for every node (`supervision.tokens.TokenVault`)."""

    async def keep(self, account: str, token: str) -> None: ...


AUDIT_TIMEOUT_S = 2.0
VERIFY_TIMEOUT_S = 5.0
KEEP_TIMEOUT_S = 5.0


async def record_audit(account: str, who: str, action: str, detail: dict[str, Any]) -> None:
    """Write one audit entry; a store that cannot take it does not stop the operation."""
    entry = AuditEntry(account, who, action, None, detail, time.time())
    try:
        with trio.fail_after(AUDIT_TIMEOUT_S):
            await current_deps().store.record_audit(entry)
    except Exception as exc:  # TooSlowError included
        log.warning("audit entry %s/%s not recorded: %s", account, action, exc)


def upstream_of(actor: Any) -> Any:
    """The actor's upstream state, or "unknown" when its status cannot be read."""
    return actor_status(actor).get("upstream")


async def load_access_token(
    account_id: str, actor: Any, token: str, *, who: str, action: str,
    detail: dict[str, Any] | None = None,
) -> Any:
    """Hand `token` to the account's actor (it leaves auth_expired and reconnects now), let a
    recovery waiting on the old token go, and audit it; returns the upstream state before.
    [cluster]: the token is kept for the other nodes first; if it cannot be, nothing is loaded
    (ServiceUnavailable)."""
    keeper = current_deps().tokens
    if keeper is not None:
        try:
            with trio.fail_after(KEEP_TIMEOUT_S):
                await keeper.keep(account_id, token)
        except TokensNotShared as exc:
            raise ServiceUnavailable(str(exc)) from exc
        except trio.TooSlowError as exc:
            raise ServiceUnavailable("the store did not keep the access token in time; "
                                     "nothing was loaded") from exc
    was = upstream_of(actor)
    actor.set_access_token(token)
    batches = current_deps().batches
    if batches is not None:
        batches.retry_recoveries()  # a recovery waiting on the old token goes now
    await record_audit(account_id, who, action, {"upstream_before": was, **(detail or {})})
    return was


async def broker_accepts(actor: Any) -> bool:
    """Ask the broker once with the token just loaded (its order list): False only when the
    broker refuses the token. A broker that is down or slow says nothing about the token, so
    the load stands and the actor keeps trying."""
    try:
        with trio.fail_after(VERIFY_TIMEOUT_S):
            await actor.broker.orders()
    except TokenExpired:
        return False
    except (BrokerError, trio.TooSlowError) as exc:
        log.info("access token not verified (%s): the actor keeps trying", exc)
    return True
