"""Reconciles after a reconnect are staggered across accounts: at most `slots` list the
day's orders at once in the process, a 429 is retried with backoff (issue 17)."""

from __future__ import annotations

import trio

from actors.account.reconnect import reconcile_staggered
from actors.backoff import Backoff
from brokers.base import RateLimited


async def test_at_most_slots_reconcile_at_once(autojump_clock: trio.abc.Clock) -> None:
    running, most, done = 0, 0, []
    refused = {"acc3": 2}  # its first two listings answer 429

    def reconciler(account: str):
        async def reconcile() -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            try:
                await trio.sleep(1.0)  # the listing and its parse
                if refused.get(account):
                    refused[account] -= 1
                    raise RateLimited("read budget spent")
            finally:
                running -= 1
            done.append(account)
        return reconcile

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for n in range(10):
            account = f"acc{n}"
            nursery.start_soon(reconcile_staggered, reconciler(account), Backoff(0.5, 1.0),
                               account, 3)
    assert most == 3
    assert sorted(done) == sorted(f"acc{n}" for n in range(10))
    assert trio.current_time() - start >= 4.0  # 12 listings, 3 at a time
