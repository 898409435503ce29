"""Single orders: one order, the batch's validation, tagged, never re-posted blindly; no
rollback. With an Idempotency-Key its tag is derived from (account, key) (`legs.single_tag`), so
a retry finds the first order by its tag and places nothing."""

from __future__ import annotations

import logging
from collections import OrderedDict

import attrs
import trio

from brokers.base import BrokerError, Order, OrderRejected, TokenExpired

from ..errors import (
    AuthExpired,
    BrokerCallFailed,
    BrokerUnavailable,
    IdempotencyConflict,
    MalformedRequest,
    Rejected,
    UnknownAccount,
)
from ..outcomes import CancelRequested, OrderOutcomeUnknown, OrderPlaced
from ..ratelimit import Priority
from ..requests import LegRequest
from .accounts import AccountContext, Accounts, Work
from .config import BatchConfig
from .legs import Leg, placed_request, single_tag
from .placing import OrderOps, UnknownOutcome
from .validation import validate_order

__all__ = ["KEYED_ORDERS_KEPT", "SingleOrders", "same_order"]

log = logging.getLogger("actors.batch")  # the coordinator's log, as before the split

# Single orders placed with an Idempotency-Key remembered by this process (the oldest dropped
# beyond it); after a restart the account's order book, reconciled with the broker, stands in.
KEYED_ORDERS_KEPT = 10_000


@attrs.define
class _Keyed:
    """A single order placed with an Idempotency-Key by this process."""

    request_hash: str
    order_id: str | None  # None: its outcome was unknown, and it was not found since


class SingleOrders:
    """Places and cancels single orders; remembers the keyed ones it placed."""

    def __init__(self, accounts: Accounts, ops: OrderOps, config: BatchConfig) -> None:
        self._accounts = accounts
        self._ops = ops
        self._config = config
        self._keyed: OrderedDict[str, _Keyed] = OrderedDict()  # tag -> keyed single order

    async def place_single(
        self, account: str, request: LegRequest | MalformedRequest, request_hash: str,
        client: str = "", idempotency_key: str | None = None,
    ) -> OrderPlaced | OrderOutcomeUnknown:
        """One order, same validation, tagged, never re-posted blindly; no rollback.

        With an `idempotency_key` the tag comes from (account, key): a retry returns the order
        the first attempt placed (found by its tag) and places nothing; the same key with
        another order is an IdempotencyConflict. An unknown outcome (the POST timed out or
        failed with a 5xx and no order carries the tag yet) answers OrderOutcomeUnknown with the
        tag, to be looked up, not retried blindly; with a key, a retry keeps answering so until
        the order is found."""
        ctx = self._accounts.context(account)
        if ctx is None:
            raise UnknownAccount(account)
        self._accounts.check_open(account, ctx)
        keyed = single_tag(account, idempotency_key) if idempotency_key else None
        if keyed is not None:
            reply = await self._single_replay(ctx, keyed, request_hash, request)
            if reply is not None:
                return reply
        try:
            malformed = isinstance(request, MalformedRequest)
            await ctx.instruments.load([] if malformed else [request.exchange])
            spec = validate_order(request, ctx.instruments.get, session=self._config.session,
                                  contracts=ctx.instruments.contracts)
        except TokenExpired as exc:
            raise AuthExpired(account) from exc
        except BrokerError as exc:
            raise BrokerUnavailable(f"instrument master: {exc}") from exc
        # The same key got in meanwhile: wait for it.
        while keyed is not None and keyed in self._accounts.singles:
            reply = await self._single_replay(ctx, keyed, request_hash, request)
            if reply is not None:
                return reply
        tag = keyed or single_tag(account)
        leg = Leg(0, tag, placed_request(spec, tag, self._config.market_protection))
        deadline = trio.current_time() + self._config.place_timeout_s * 3
        self._accounts.check_open(account)  # it began meanwhile? From here to tracked, no await
        work = self._accounts.singles[tag] = Work(account,
                                                  frozenset({(spec.exchange, spec.tradingsymbol)}))
        try:
            await self._ops.send(ctx.actor, ctx.limiter, None, leg, Priority.NORMAL, deadline)
        except OrderRejected as exc:
            raise Rejected(exc.message) from exc
        except TokenExpired as exc:  # refused by the broker: nothing was placed
            raise AuthExpired(account) from exc
        except UnknownOutcome as exc:
            log.warning("order %s of %s by %s: unknown outcome: %s", tag, account, client, exc)
            if keyed is not None:
                self._remember(tag, request_hash, None)
            return OrderOutcomeUnknown(tag, str(exc))
        except BrokerError as exc:
            raise BrokerCallFailed(str(exc), tag) from exc
        else:
            if keyed is not None:
                self._remember(tag, request_hash, leg.order_id)
        finally:
            del self._accounts.singles[tag]
            work.finish()
        log.info("order %s (%s) of %s by %s", leg.order_id, tag, account, client)
        return OrderPlaced(leg.order_id, tag)

    async def _single_replay(
        self, ctx: AccountContext, tag: str, request_hash: str,
        request: LegRequest | MalformedRequest,
    ) -> OrderPlaced | OrderOutcomeUnknown | None:
        """A keyed single order placed before: its answer; None when there is none (place it).

        Waits for an attempt with the same key in flight. An order this process placed is
        answered from memory; otherwise the account's book (reconciled with the broker since
        the actor connected) tells whether an earlier process placed it; a retry of an unknown
        outcome, or a book that may be behind (upstream not connected), asks the broker."""
        work = self._accounts.singles.get(tag)
        if work is not None:
            with trio.move_on_after(self._config.idempotency_wait_s):
                await work.done.wait()
            if not work.done.is_set():
                return OrderOutcomeUnknown(tag, "an order with this Idempotency-Key is still "
                                                "being placed")
        known = self._keyed.get(tag)
        if known is not None and known.request_hash != request_hash:
            raise IdempotencyConflict("this Idempotency-Key was used with a different order")
        if known is not None and known.order_id is not None:
            return OrderPlaced(known.order_id, tag, replayed=True)
        order: Order | None
        if known is None and ctx.actor.upstream.state == "connected":
            payload = next((p for p in ctx.actor.orders_tagged(tag) if p.get("tag") == tag),
                           None)
            order = None if payload is None else ctx.actor.broker.parse_order(payload)
        else:
            try:
                order = await self._ops.lookup(ctx.actor, tag)
            except UnknownOutcome as exc:
                raise BrokerUnavailable(f"{exc}: an earlier order with this Idempotency-Key "
                                        "may exist; nothing was placed", tag) from exc
        if order is None:
            if known is None:
                return None
            return OrderOutcomeUnknown(tag, f"the order with this Idempotency-Key had an unknown "
                                      f"outcome and the broker lists no order tagged {tag} "
                                      "yet; nothing was placed again. Look it up by its tag; "
                                      "once sure it was not placed, use a new key")
        if not same_order(request, order):
            raise IdempotencyConflict("this Idempotency-Key was used with a different order")
        self._remember(tag, request_hash, order.order_id)
        return OrderPlaced(order.order_id, tag, replayed=True)

    def _remember(self, tag: str, request_hash: str, order_id: str | None) -> None:
        self._keyed[tag] = _Keyed(request_hash, order_id)
        self._keyed.move_to_end(tag)
        while len(self._keyed) > KEYED_ORDERS_KEPT:
            self._keyed.popitem(last=False)

    async def cancel_order(
        self, account: str, order_id: str, client: str = ""
    ) -> CancelRequested:
        ctx = self._accounts.context(account)
        if ctx is None:
            raise UnknownAccount(account)
        if ctx.parked:
            raise AuthExpired(account)
        try:
            await self._ops.write(ctx.limiter, Priority.NORMAL, ctx.actor.broker.cancel, order_id,
                                  account=account,
                                  deadline=trio.current_time() + self._config.place_timeout_s)
        except OrderRejected as exc:
            raise Rejected(exc.message) from exc
        except TokenExpired as exc:
            raise AuthExpired(account) from exc
        except BrokerError as exc:
            raise BrokerCallFailed(str(exc)) from exc
        log.info("cancel %s of %s by %s", order_id, account, client)
        return CancelRequested(order_id)


def same_order(request: LegRequest | MalformedRequest, order: Order) -> bool:
    """Whether a found order is the one `request` asks for (instrument and side: the broker may
    have changed the rest, a modified quantity say)."""
    if isinstance(request, MalformedRequest):
        return False
    return all(str(getattr(request, name)).upper() == str(getattr(order, name)).upper()
               for name in ("tradingsymbol", "exchange", "transaction_type"))
