"""The replay buffer's contents at start: an account's last committed updates, encoded once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from store import Store

from .frames import order_frame

__all__ = ["recent_events", "replay_after"]


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
        recent.extend((e.seq, e.payload, order_frame(account, e.seq, e.payload)) for e in events)
        first = events[-1].seq
    return recent


def replay_after(
    replay: Sequence[tuple[int, str]], seq: int, since: int | None
) -> list[str] | None:
    """The frames after `since` when the buffer still holds them all (`seq`: the last
    committed), else None: the subscriber needs a snapshot."""
    oldest = replay[0][0] if replay else seq + 1
    if since is None or not 0 <= since <= seq or since < oldest - 1:
        return None
    return [message for s, message in replay if s > since]
