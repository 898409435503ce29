"""The per-account token bucket: rate, burst, priority, cancellation (autojump clock)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors.ratelimit import Priority, RateLimiter


async def test_burst_then_rate(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(rate=10)
    start = trio.current_time()
    times = []
    with trio.fail_after(10):
        for _ in range(30):
            await limiter.acquire()
            times.append(trio.current_time() - start)
    assert times[:10] == [0.0] * 10  # the burst
    assert times[-1] == pytest.approx(2.0)  # 20 more at 10/s
    gaps = [b - a for a, b in zip(times[10:], times[11:], strict=False)]
    assert all(g == pytest.approx(0.1) for g in gaps)


async def test_rollbacks_overtake_waiting_orders(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(rate=10, burst=1)
    await limiter.acquire()  # empty the bucket
    served: list[str] = []

    async def take(name: str, priority: Priority) -> None:
        await limiter.acquire(priority)
        served.append(name)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for n in range(3):
                nursery.start_soon(take, f"leg{n}", Priority.NORMAL)
                await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(take, "rollback", Priority.ROLLBACK)
    assert served == ["rollback", "leg0", "leg1", "leg2"]


async def test_cancelled_waiter_leaves_the_queue(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(rate=1, burst=1)
    await limiter.acquire()
    with trio.move_on_after(0.5):
        await limiter.acquire()
    assert limiter.statistics().waiting == 0
    start = trio.current_time()
    with trio.fail_after(5):
        await limiter.acquire()
    assert trio.current_time() - start == pytest.approx(0.5)
    assert limiter.statistics().granted == 2


async def test_cancelled_head_hands_over(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(rate=1, burst=1)
    await limiter.acquire()
    done: list[str] = []
    start = trio.current_time()

    async def take(name: str, give_up_after: float) -> None:
        with trio.move_on_after(give_up_after):
            await limiter.acquire()
            done.append(f"{name}@{trio.current_time() - start:.1f}")

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(take, "head", 0.2)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(take, "next", 5.0)
    assert done == ["next@1.0"]
