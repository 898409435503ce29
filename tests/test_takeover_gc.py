"""The cyclic collector is off from a takeover round until `hold_s` after the last one and the
listings it started are done (at most `max_s`), and one turned off by someone else stays off."""

from __future__ import annotations

import gc

import trio

from actors.account.reconnect import reconcile_staggered
from actors.backoff import Backoff
from supervision.takeover_gc import CollectorHold


async def test_the_collector_is_held_off_after_each_takeover(autojump_clock: trio.abc.Clock
                                                             ) -> None:
    assert gc.isenabled()
    hold = CollectorHold(hold_s=2.0, max_s=5.0)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold.run)
            await trio.sleep(1)
            assert gc.isenabled()  # no takeover yet
            hold.takeover()
            await trio.sleep(1.5)
            assert not gc.isenabled()
            hold.takeover()  # another round: 2 s from now
            await trio.sleep(1.5)
            assert not gc.isenabled()
            await trio.sleep(1)
            assert gc.isenabled() and hold.holds == 1
            for _ in range(4):  # rounds that go on taking: on again 5 s after the first
                hold.takeover()
                await trio.sleep(1.5)
            assert gc.isenabled() and hold.holds == 2
            gc.disable()  # someone else's: left alone
            hold.takeover()
            await trio.sleep(3)
            assert not gc.isenabled() and hold.holds == 2
            nursery.cancel_scope.cancel()
    finally:
        gc.enable()


async def test_the_hold_lasts_while_the_takeovers_listings_are_pending(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def listing() -> None:
        await trio.sleep(3.5)

    hold = CollectorHold(hold_s=2.0, max_s=5.0)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold.run)
            hold.takeover()
            nursery.start_soon(reconcile_staggered, listing, Backoff(1.0, 1.0), "acct", 16)
            await trio.sleep(3)
            assert not gc.isenabled()  # past hold_s, the listing still pending
            await trio.sleep(1)
            assert gc.isenabled()
            nursery.cancel_scope.cancel()
    finally:
        gc.enable()
