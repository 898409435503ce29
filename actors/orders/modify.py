"""Modifying an open order (Kite's `PUT /orders/regular/{order_id}`): validated against the
order as the account's book knows it, sent with an order-write token of the account's budget,
and audited (who changed which order to what).

A final order (COMPLETE, CANCELLED, REJECTED) is refused here, before the broker is asked: its
state never changes again (`stays_final`)."""

from __future__ import annotations

import logging
import time

import attrs
import trio

from brokers.base import (
    Broker,
    BrokerError,
    Order,
    OrderRejected,
    TokenExpired,
    stays_final,
)
from store.base import AuditEntry, Store

from ..account import AccountActor
from ..errors import (
    AuthExpired,
    BrokerCallFailed,
    BrokerUnavailable,
    MalformedRequest,
    OrderFinal,
    OrderNotFound,
    Rejected,
    UnknownAccount,
)
from ..outcomes import OrderModified
from ..ratelimit import Priority
from ..requests import ModifyRequest
from .accounts import Accounts
from .config import BatchConfig
from .placing import OrderOps
from .validation import validate_modify

__all__ = ["OrderModifier"]

log = logging.getLogger("actors.batch")  # the coordinator's log, as single orders'


class OrderModifier:
    """Modifies single open orders of the coordinator's accounts."""

    def __init__(self, accounts: Accounts, ops: OrderOps, store: Store,
                 config: BatchConfig) -> None:
        self._accounts = accounts
        self._ops = ops
        self._store = store
        self._config = config

    async def modify_order(
        self, account: str, order_id: str, request: ModifyRequest | MalformedRequest,
        client: str = "",
    ) -> OrderModified:
        """Send the modification; OrderFinal for a final order, InvalidRequest for one the
        instrument's rules refuse, Rejected when the broker refuses it."""
        ctx = self._accounts.context(account)
        if ctx is None:
            raise UnknownAccount(account)
        self._accounts.check_open(account, ctx)
        order = await self._order(ctx.actor, order_id)
        if stays_final(order.status):
            raise OrderFinal(f"order {order_id} is {order.status}: a final order cannot be "
                             "modified")
        try:
            await ctx.instruments.load([order.exchange])
        except TokenExpired as exc:
            raise AuthExpired(account) from exc
        except BrokerError as exc:
            raise BrokerUnavailable(f"instrument master: {exc}") from exc
        change = validate_modify(request, order, ctx.instruments.get)
        try:
            await self._ops.write(
                ctx.limiter, Priority.NORMAL, _modify, ctx.actor.broker, order_id,
                change.form(), account=account,
                deadline=trio.current_time() + self._config.place_timeout_s)
        except OrderRejected as exc:
            raise Rejected(exc.message) from exc
        except TokenExpired as exc:
            raise AuthExpired(account) from exc
        except BrokerError as exc:
            raise BrokerCallFailed(str(exc)) from exc
        log.info("modify %s of %s by %s: %s", order_id, account, client, change)
        done = OrderModified(order_id, **attrs.asdict(change))
        await self._audit(AuditEntry(account, client or "unknown", "modify", order_id,
                                     attrs.asdict(change), time.time()))
        return done

    async def _order(self, actor: AccountActor, order_id: str) -> Order:
        """The order as the account's book knows it; one placed a moment ago that no push has
        brought yet, as the broker lists it."""
        payload = actor.order(order_id)
        if payload is not None:
            return actor.broker.parse_order(payload)
        try:
            with trio.fail_after(self._config.lookup_timeout_s):
                history = await actor.broker.order_history(order_id)
        except OrderRejected as exc:
            raise OrderNotFound(f"no order {order_id!r} in account {actor.account!r}") from exc
        except (BrokerError, trio.TooSlowError) as exc:
            raise BrokerUnavailable(f"could not look order {order_id} up: {exc!r}") from exc
        if not history:
            raise OrderNotFound(f"no order {order_id!r} in account {actor.account!r}")
        return history[-1]

    async def _audit(self, entry: AuditEntry) -> None:
        """The modification is done at the broker: a store that cannot record it now is
        logged, not answered as a failure (a retry would modify twice)."""
        try:
            with trio.fail_after(self._config.store_timeout_s):
                await self._store.record_audit(entry)
        except Exception as exc:  # StoreError and TooSlowError alike
            log.warning("audit of modify %s/%s not recorded: %r", entry.account, entry.order_id,
                        exc)


async def _modify(broker: Broker, order_id: str, form: dict[str, object]) -> str:
    return await broker.modify(order_id, **form)
