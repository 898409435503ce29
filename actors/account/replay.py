"""An account's committed updates read back from the store, encoded as subscribers get them: the
replay buffer's contents at start, the frames between two seqs, and a snapshot at a seq (what a
[cluster] node that does not own the account serves its subscribers from when its stream does
not reach back far enough)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from store import AccountState, OrderEvent, Store

from ..calendar import trading_day
from .book import OrderBook, of_day
from .config import ActorConfig
from .frames import order_frame, snapshot_frame

__all__ = ["frames_between", "framed", "load_state", "replay_after", "stored_snapshot"]

#: Tries to read a snapshot with no update committed in between (`stored_snapshot`).
_SNAPSHOT_TRIES = 5


async def load_state(store: Store, account: str, count: int) -> AccountState:
    """`account`'s orders, last seq and last `count` updates (oldest first), read from `store`:
    what its actor starts from, unless it was read for many accounts at once."""
    orders = await store.load_orders(account)
    seq = await store.last_seq(account)
    return AccountState(orders, seq, await _events_between(store, account, seq - count, seq))


async def _events_between(
    store: Store, account: str, after: int, upto: int
) -> list[OrderEvent]:
    """`account`'s updates with `after` < seq <= `upto`, oldest first."""
    found: list[OrderEvent] = []
    first = max(0, after)
    while first < upto:
        events = await store.read_events(account, first, limit=1_000)
        if not events:
            break
        found.extend(e for e in events if e.seq <= upto)
        first = events[-1].seq
    return found


def framed(
    account: str, events: Sequence[OrderEvent], seq: int, count: int
) -> list[tuple[int, dict[str, Any], str]]:
    """(seq, payload, order frame) of the events up to `seq` of the last `count`: what a
    subscriber resuming with `since` is replayed."""
    return [(e.seq, e.payload, order_frame(account, e.seq, e.payload))
            for e in events if seq - count < e.seq <= seq]


async def frames_between(
    store: Store, account: str, after: int, upto: int
) -> list[tuple[int, str]]:
    """(seq, order frame) of `account`'s updates with `after` < seq <= `upto`, oldest first."""
    return [(e.seq, order_frame(account, e.seq, e.payload))
            for e in await _events_between(store, account, after, upto)]


async def stored_snapshot(
    store: Store, account: str, upstream: str, config: ActorConfig
) -> tuple[int, str]:
    """The account's seq and its snapshot frame at that seq, from the store: the orders are read
    between two reads of the seq, again while an update lands in between (else, after a few
    tries, the last read's seq; the orders are then at least as new, never older)."""
    seq = await store.last_seq(account)
    for _ in range(_SNAPSHOT_TRIES):
        payloads = await store.load_orders(account)
        after = await store.last_seq(account)
        if after == seq:
            break
        seq = after
    day = trading_day(config.wall_clock()).isoformat()
    book = OrderBook(of_day(payloads, day), keep_finished=config.book_finished)
    orders, older = book.snapshot(config.snapshot_finished)
    return seq, snapshot_frame(account, seq, upstream, orders, older)


def replay_after(
    replay: Sequence[tuple[int, str]], seq: int, since: int | None
) -> list[str] | None:
    """The frames after `since` when the buffer still holds them all (`seq`: the last
    committed), else None: the subscriber needs a snapshot."""
    oldest = replay[0][0] if replay else seq + 1
    if since is None or not 0 <= since <= seq or since < oldest - 1:
        return None
    return [message for s, message in replay if s > since]
