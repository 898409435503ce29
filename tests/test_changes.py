"""`Changes`: a waiter re-checks its condition after each `notify()`, and returns its value."""

from __future__ import annotations

import trio
import trio.testing

from actors.changes import Changes
from actors.health import HealthRegistry


async def test_until_returns_once_the_condition_holds() -> None:
    changes, counter = Changes(), [0]
    got: list[int] = []

    async def waiter() -> None:
        got.append(await changes.until(lambda: counter[0] if counter[0] >= 2 else 0))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            for _ in range(3):
                counter[0] += 1
                changes.notify()
                await trio.testing.wait_all_tasks_blocked()
    assert got == [2]  # woken at the first change that made it true, not later


async def test_a_health_entry_wakes_its_waiters_on_any_field_set() -> None:
    entry = HealthRegistry().register("web", "service")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(entry.changes.until, lambda: entry.restarts >= 1)
            await trio.testing.wait_all_tasks_blocked()
            entry.restarts += 1
    assert entry.restarts == 1
