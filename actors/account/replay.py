"""The replay buffer's contents at start: an account's last committed updates, encoded once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from store import AccountState, OrderEvent, Store

from .frames import order_frame

__all__ = ["framed", "load_state", "replay_after"]


async def load_state(store: Store, account: str, count: int) -> AccountState:
    """`account`'s orders, last seq and last `count` updates (oldest first), read from `store`:
    what its actor starts from, unless it was read for many accounts at once."""
    orders = await store.load_orders(account)
    seq = await store.last_seq(account)
    recent: list[OrderEvent] = []
    first = max(0, seq - count)
    while first < seq:
        events = await store.read_events(account, first, limit=1_000)
        if not events:
            break
        recent.extend(events)
        first = events[-1].seq
    return AccountState(orders, seq, recent)


def framed(
    account: str, events: Sequence[OrderEvent], seq: int, count: int
) -> list[tuple[int, dict[str, Any], str]]:
    """(seq, payload, order frame) of the events up to `seq` of the last `count`: what a
    subscriber resuming with `since` is replayed."""
    return [(e.seq, e.payload, order_frame(account, e.seq, e.payload))
            for e in events if seq - count < e.seq <= seq]


def replay_after(
    replay: Sequence[tuple[int, str]], seq: int, since: int | None
) -> list[str] | None:
    """The frames after `since` when the buffer still holds them all (`seq`: the last
    committed), else None: the subscriber needs a snapshot."""
    oldest = replay[0][0] if replay else seq + 1
    if since is None or not 0 <= since <= seq or since < oldest - 1:
        return None
    return [message for s, message in replay if s > since]
