"""Saved baskets: a ticket's legs kept under a name, per account, in the store, so they follow
the trader to another browser (issue 16, item 5).

Saving, listing, loading and deleting never reach a broker: nothing here can place an order.
The web front structures the name and the legs (web/shapes.py); this module keeps the
account's cap, bounds each store call in time, and turns the store's records and failures into
the API's answers and refusals (`BasketNotFound`, `InvalidRequest`, `StoreUnavailable`).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import attrs
import trio

from store import BasketRecord, BasketsFull, Store, StoreError

from .errors import BasketNotFound, FieldError, InvalidRequest, StoreUnavailable
from .requests import LegRequest, SaveBasketRequest

__all__ = ["MAX_BASKETS", "BasketDeleted", "BasketList", "BasketSummary", "SavedBasket",
           "SavedBaskets"]

#: Saved baskets one account keeps at most.
MAX_BASKETS = 100
STORE_TIMEOUT_S = 5.0

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class BasketSummary:
    """One saved basket in the account's list."""

    name: str = attrs.field(metadata={"doc": "the basket's name"})
    legs: int = attrs.field(metadata={"doc": "how many legs it holds"})
    updated_at: float = attrs.field(metadata={"doc": "when it was last saved, Unix time"})


@attrs.frozen(kw_only=True)
class BasketList:
    """The account's saved baskets, by name (`GET /accounts/{id}/baskets`)."""

    account: str = attrs.field(metadata={"doc": "the account"})
    baskets: list[BasketSummary] = attrs.field(metadata={"doc": "every saved basket, by name"})
    max_baskets: int = attrs.field(metadata={"doc": "how many the account may keep"})


@attrs.frozen(kw_only=True)
class SavedBasket:
    """A saved basket: its legs as a batch request takes them (POST them as `orders` of
    `/accounts/{id}/batch-orders` to place them). Saved or loaded, nothing was placed."""

    account: str = attrs.field(metadata={"doc": "the account"})
    name: str = attrs.field(metadata={"doc": "the basket's name"})
    orders: list[LegRequest] = attrs.field(metadata={"doc": "the legs, in their order"})
    created_at: float = attrs.field(metadata={"doc": "when it was first saved, Unix time"})
    updated_at: float = attrs.field(metadata={
        "doc": "when it was last saved, Unix time (equal to created_at until replaced)"})


@attrs.frozen(kw_only=True)
class BasketDeleted:
    """The basket is gone (`DELETE /accounts/{id}/baskets/{name}`)."""

    account: str = attrs.field(metadata={"doc": "the account"})
    name: str = attrs.field(metadata={"doc": "the basket's name"})
    deleted: bool = attrs.field(default=True, metadata={"doc": "always true"})


def _leg_json(leg: LegRequest) -> dict[str, Any]:
    """A leg as stored: the fields it has (a leg never has a tag)."""
    return {k: v for k, v in attrs.asdict(leg).items() if v is not None}


def _saved(record: BasketRecord) -> SavedBasket:
    return SavedBasket(account=record.account, name=record.name,
                       orders=[LegRequest(**leg) for leg in record.legs],
                       created_at=record.created_at, updated_at=record.updated_at)


class SavedBaskets:
    """The saved baskets of every account, over the store."""

    def __init__(self, store: Store, *, max_baskets: int = MAX_BASKETS,
                 timeout_s: float = STORE_TIMEOUT_S) -> None:
        self._store = store
        self.max_baskets = max_baskets
        self._timeout_s = timeout_s

    async def summaries(self, account: str) -> BasketList:
        records = await self._call(self._store.list_baskets(account))
        return BasketList(account=account, max_baskets=self.max_baskets, baskets=[
            BasketSummary(name=r.name, legs=len(r.legs), updated_at=r.updated_at)
            for r in records])

    async def load(self, account: str, name: str) -> SavedBasket:
        record = await self._call(self._store.load_basket(account, name))
        if record is None:
            raise BasketNotFound(f"no saved basket {name!r}")
        return _saved(record)

    async def save(self, account: str, name: str, request: SaveBasketRequest) -> SavedBasket:
        """Create or replace the basket `name`; a new name past the cap is refused (422)."""
        record = BasketRecord(account, name, [_leg_json(leg) for leg in request.orders])
        try:
            stored = await self._call(self._store.save_basket(record, self.max_baskets))
        except BasketsFull:
            raise InvalidRequest([FieldError(
                "name", "max_baskets", f"the account keeps at most {self.max_baskets} saved "
                "baskets: delete one, or save under a name it has")]) from None
        return _saved(stored)

    async def delete(self, account: str, name: str) -> BasketDeleted:
        if not await self._call(self._store.delete_basket(account, name)):
            raise BasketNotFound(f"no saved basket {name!r}")
        return BasketDeleted(account=account, name=name)

    async def _call(self, call: Awaitable[T]) -> T:
        """One store call, bounded; a failure or a late answer is a 503, never a 500."""
        try:
            with trio.fail_after(self._timeout_s):
                return await call
        except BasketsFull:
            raise
        except trio.TooSlowError as exc:
            raise StoreUnavailable("the store did not answer in time") from exc
        except StoreError as exc:
            raise StoreUnavailable(f"the store failed: {type(exc).__name__}") from exc
