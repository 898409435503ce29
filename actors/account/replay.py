"""An account's committed updates read back from the store, encoded as subscribers get them: the
replay buffer's contents at start, the frames between two seqs, and a snapshot at a seq (what a
[cluster] node that does not own the account serves its subscribers from when its stream does
not reach back far enough)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from store import Store

from ..calendar import trading_day
from .book import OrderBook, of_day
from .config import ActorConfig
from .frames import order_frame, snapshot_frame

__all__ = ["frames_between", "recent_events", "replay_after", "stored_snapshot"]

#: Tries to read a snapshot with no update committed in between (`stored_snapshot`).
_SNAPSHOT_TRIES = 5


async def recent_events(
    store: Store, account: str, seq: int, count: int
) -> list[tuple[int, dict[str, Any], str]]:
    """(seq, payload, order frame) of `account`'s last `count` updates up to `seq`, oldest
    first: what a subscriber resuming with `since` is replayed."""
    recent: list[tuple[int, dict[str, Any], str]] = []
    first = max(0, seq - count)
    while first < seq:
        events = await store.read_events(account, first, limit=1_000)
        if not events:
            break
        recent.extend((e.seq, e.payload, order_frame(account, e.seq, e.payload))
                      for e in events if e.seq <= seq)
        first = events[-1].seq
    return recent


async def frames_between(
    store: Store, account: str, after: int, upto: int
) -> list[tuple[int, str]]:
    """(seq, order frame) of `account`'s updates with `after` < seq <= `upto`, oldest first."""
    return [(seq, frame) for seq, _, frame in await recent_events(store, account, upto,
                                                                  upto - after)]


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
