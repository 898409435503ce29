"""Reconciles after a reconnect are staggered across accounts: at most `slots` list the
day's orders at once in the process, a 429 is retried with backoff (issue 17); what can wait
(a positions fetch) waits for them, boundedly (issue 18)."""

from __future__ import annotations

import trio
import trio.testing

from actors.account.reconnect import reconcile_staggered, reconciles_settled
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


async def test_reconciles_settled_waits_for_the_pending_ones(autojump_clock: trio.abc.Clock
                                                             ) -> None:
    async def listing() -> None:
        await trio.sleep(1.0)

    async def stuck() -> None:
        await trio.sleep(60)

    start = trio.current_time()
    await reconciles_settled(5.0)  # none pending: at once
    assert trio.current_time() == start
    async with trio.open_nursery() as nursery:
        for n in range(4):  # 2 slots: the last ones are done 2 s from now
            nursery.start_soon(reconcile_staggered, listing, Backoff(0.5, 1.0), f"acc{n}", 2)
        await trio.testing.wait_all_tasks_blocked()
        await reconciles_settled(5.0)
        assert trio.current_time() - start == 2.0
        nursery.start_soon(reconcile_staggered, stuck, Backoff(0.5, 1.0), "stuck", 2)
        await trio.testing.wait_all_tasks_blocked()
        await reconciles_settled(5.0)  # bounded
        assert trio.current_time() - start == 7.0
        nursery.cancel_scope.cancel()
