"""Exits: flatten one net position from the desk, through the kill switch's own flatten.

`PositionExits.exit_position` reads the account's positions, finds the one named (exchange,
tradingsymbol, product) and hands it to `Rollback.flatten_position`: market-protected reverse
orders (a marketable LIMIT re-priced where MARKET is refused), sliced by the freeze quantity,
with the position's product, at rollback priority under the rate limit, each tagged
`exit_tag(exit_id, attempt)` and followed to its final state. It runs shielded: a client
hanging up never leaves an exit half done. While it runs it counts as a single order being
placed (`Accounts.singles`), so a kill switch waits for it and leaves its symbol alone; an
instrument that a batch (or its rollback), a recovery or an order is trading right then is
refused (PositionBusy), so an exit never flattens what a rollback flattens too.

With an Idempotency-Key the exit's id comes from (account, key) (`legs.exit_id`): a retry
answers the first exit's report (from memory, or from the orders the account's book holds under
its tags after a restart) and sends nothing; the same key with another position is an
IdempotencyConflict.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from functools import partial

import attrs
import trio

from brokers.base import FINAL_STATUSES, BrokerError, Position, TokenExpired

from ..errors import (
    AuthExpired,
    BrokerUnavailable,
    IdempotencyConflict,
    InvalidRequest,
    MalformedRequest,
    PositionBusy,
    PositionNotFound,
    UnknownAccount,
)
from ..outcomes import ExitReport, FlattenOrder
from ..requests import ExitRequest
from .accounts import AccountContext, Accounts, Work
from .config import BatchConfig
from .kill import flatten_order
from .legs import exit_id, exit_tag
from .rollback import Rollback

__all__ = ["PositionExits"]

log = logging.getLogger("actors.exits")

#: Keyed exits remembered by this process (the oldest dropped beyond it).
KEYED_EXITS_KEPT = 1_000


@attrs.frozen
class _Keyed:
    request_hash: str
    report: ExitReport


class PositionExits:
    """Flattens single positions; remembers the keyed exits it ran."""

    def __init__(self, accounts: Accounts, rollback: Rollback, config: BatchConfig) -> None:
        self._accounts = accounts
        self._rollback = rollback
        self._config = config
        self._keyed: OrderedDict[str, _Keyed] = OrderedDict()  # exit tag -> its report

    async def exit_position(
        self, account: str, request: ExitRequest | MalformedRequest, request_hash: str,
        client: str = "", idempotency_key: str | None = None,
    ) -> ExitReport:
        """Flatten the position `request` names; PositionNotFound when the account holds none
        (flat, or never held), KillRunning while the kill switch runs, PositionBusy while
        another order of the account trades the instrument."""
        ctx = self._accounts.context(account)
        if ctx is None:
            raise UnknownAccount(account)
        if isinstance(request, MalformedRequest):
            raise InvalidRequest(request.fields)
        self._accounts.check_open(account, ctx)
        ident = exit_id(account, idempotency_key)
        tag = exit_tag(ident)
        if idempotency_key is not None:
            replay = await self._replay(ctx, account, tag, request, request_hash)
            if replay is not None:
                return replay
        position = await _held(ctx, account, request)
        warnings = []
        try:  # only for slicing by the freeze quantity: without it, one order
            await ctx.instruments.load({position.exchange})
        except BrokerError as exc:
            warnings.append(f"instrument master: {exc}; not sliced")
        self._accounts.check_open(account)  # it began meanwhile? From here to tracked, no await
        symbol = (position.exchange, position.tradingsymbol)
        busy = sorted(key for key, work in self._accounts.unfinished(account).items()
                      if symbol in work.symbols)
        if busy:
            raise PositionBusy(f"{symbol[0]}:{symbol[1]} is being traded by {', '.join(busy)} "
                               "(a batch, its rollback or an order): retry once it finishes")
        work = self._accounts.singles[tag] = Work(
            account, frozenset({(position.exchange, position.tradingsymbol)}))
        orders: list[FlattenOrder] = []
        try:
            with trio.CancelScope(shield=True):
                deadline = trio.current_time() + self._config.rollback_timeout_s
                await self._rollback.flatten_position(
                    ctx, partial(exit_tag, ident), 0, position, deadline,
                    lambda reverse: orders.append(flatten_order(reverse)))
                report = await _report(ctx, account, position, orders, warnings)
        finally:
            del self._accounts.singles[tag]
            work.finish()
        log.info("exit %s of %s by %s: %s, %d orders, remaining %s", tag, account, client,
                 report.status, len(orders), report.remaining)
        if idempotency_key is not None:
            self._keyed[tag] = _Keyed(request_hash, report)
            self._keyed.move_to_end(tag)
            while len(self._keyed) > KEYED_EXITS_KEPT:
                self._keyed.popitem(last=False)
        return report

    async def _replay(
        self, ctx: AccountContext, account: str, tag: str, request: ExitRequest,
        request_hash: str,
    ) -> ExitReport | None:
        """A keyed exit run before: its report, replayed; None when there is none."""
        work = self._accounts.singles.get(tag)
        if work is not None:  # the same key in flight: its answer, once it has one
            await work.done.wait()
        known = self._keyed.get(tag)
        if known is not None:
            if known.request_hash != request_hash:
                raise IdempotencyConflict("this Idempotency-Key was used with another exit")
            return attrs.evolve(known.report, replayed=True)
        sent = ctx.actor.orders_tagged(tag)
        if not sent:
            return None
        if any((o.get("exchange"), o.get("tradingsymbol"), o.get("product"))
               != (request.exchange, request.tradingsymbol, request.product) for o in sent):
            raise IdempotencyConflict("this Idempotency-Key was used with another exit")
        orders = [FlattenOrder(order_id=o.get("order_id"), tag=o.get("tag") or tag,
                               status=o.get("status") or "", order_type=o.get("order_type") or "",
                               filled_quantity=int(o.get("filled_quantity") or 0),
                               modifications=0, error=None) for o in sent]
        side = -1 if sent[0].get("transaction_type") == "SELL" else 1
        before = Position(request.tradingsymbol, request.exchange, request.product,
                          -side * sum(o.filled_quantity for o in orders))
        return attrs.evolve(await _report(ctx, account, before, orders, []), replayed=True)


async def _held(ctx: AccountContext, account: str, request: ExitRequest) -> Position:
    """The open position `request` names, as the broker lists it now."""
    try:
        positions = await ctx.actor.broker.positions()
    except TokenExpired as exc:
        raise AuthExpired(account) from exc
    except BrokerError as exc:
        raise BrokerUnavailable(f"positions: {exc}; nothing was sent") from exc
    wanted = (request.exchange, request.tradingsymbol, request.product)
    for position in positions:
        if (position.exchange, position.tradingsymbol, position.product) == wanted:
            if position.quantity:
                return position
    raise PositionNotFound(f"account {account!r} holds no open position in "
                           f"{request.exchange}:{request.tradingsymbol} {request.product}")


async def _report(
    ctx: AccountContext, account: str, position: Position, orders: list[FlattenOrder],
    warnings: list[str],
) -> ExitReport:
    """The exit's report: what is left of the position, read again from the broker."""
    remaining: int | None
    try:
        remaining = sum(p.quantity for p in await ctx.actor.broker.positions()
                        if (p.exchange, p.tradingsymbol, p.product)
                        == (position.exchange, position.tradingsymbol, position.product))
    except BrokerError as exc:
        remaining = None
        warnings = [*warnings, f"positions after: {exc}"]
    open_orders = [o.order_id for o in orders if o.order_id and o.status not in FINAL_STATUSES]
    done = remaining == 0 and not open_orders and bool(orders)
    return ExitReport(
        account=account, exchange=position.exchange, tradingsymbol=position.tradingsymbol,
        product=position.product, quantity=position.quantity,
        status="done" if done else "incomplete", orders=orders, remaining=remaining,
        open_orders=open_orders, warnings=warnings)
