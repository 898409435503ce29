"""Older final orders, paged from the store: the account's book (and its snapshot) holds only
every working order and the newest final ones, whatever the day's size."""

from __future__ import annotations

import logging
from typing import Any

import trio

from store import Store

from .errors import FieldError, InvalidInput, ServiceUnavailable

__all__ = ["older_orders"]

log = logging.getLogger("web.orders")

#: The store's answer to a page, at most (a read; nothing is half done when it times out).
STORE_TIMEOUT_S = 5.0


async def older_orders(
    store: Store, account: str, before: str, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `limit` final orders that settled before order `before`, the latest first, and
    the cursor of the next page (None at the end). 422 when `before` is no order of
    `account`; 503 when the store does not answer."""
    try:
        with trio.fail_after(STORE_TIMEOUT_S):
            page = await store.finished_orders(account, before, limit + 1)
    except trio.TooSlowError as exc:
        raise ServiceUnavailable("the store did not answer in time") from exc
    except Exception as exc:
        log.warning("orders page of %s failed: %s", account, exc)
        raise ServiceUnavailable(f"the store failed: {type(exc).__name__}") from exc
    if page is None:
        raise InvalidInput([FieldError("before", "known",
                                       f"before: no order {before!r} in this account")])
    more = len(page) > limit
    page = page[:limit]
    return page, str(page[-1]["order_id"]) if more else None
