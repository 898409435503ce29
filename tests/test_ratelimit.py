"""The per-account order-rate limiter: a sliding window like the broker's, with priorities and
clean cancellation (autojump clock); and, at the paper venue with its own rate limit on, a
rollback path that never draws a 429."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing

from actors.ratelimit import Priority, RateLimiter
from brokers.base import OrderRequest, RateLimited
from tests.fixtures_desk import open_desk
from tests.fixtures_orders import leg, tags
from tests.fixtures_venue import BANKNIFTY_FUT, start_venue


async def test_burst_then_rate(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(rate=10)
    start = trio.current_time()
    times = []
    with trio.fail_after(10):
        for _ in range(30):
            await limiter.acquire()
            times.append(trio.current_time() - start)
    assert times[:10] == [0.0] * 10  # a whole second's worth at once
    # ... and then nothing until the first of them leaves the window: 10 more at 1.0 s, 10 at
    # 2.0 s. (A token bucket would let 0.1, 0.2, ... through: 19 in the first second.)
    assert times[10:20] == [pytest.approx(1.0)] * 10
    assert times[20:] == [pytest.approx(2.0)] * 10
    assert limiter.statistics().tokens == 0


async def test_a_smaller_burst_spreads_the_grants(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(rate=10, burst=2)
    start = trio.current_time()
    times = []
    with trio.fail_after(10):
        for _ in range(6):
            await limiter.acquire()
            times.append(round(trio.current_time() - start, 6))
    assert times == [0.0, 0.0, 0.2, 0.2, 0.4, 0.4]
    stats = limiter.statistics()
    assert (stats.tokens, stats.full_in) == (0.0, pytest.approx(0.2))


def _most_in_one_window(times: list[float], window: float = 1.0) -> int:
    """The most grants in any window [t, t + window): the broker's sliding second."""
    ordered = sorted(times)
    return max(sum(1 for u in ordered if t <= u < t + window - 1e-9) for t in ordered)


@pytest.mark.parametrize(("burst", "margin"), [(None, 0.0), (3, 0.0), (None, 0.05), (7, 0.02)])
async def test_no_second_ever_holds_more_than_the_limit(
    autojump_clock: trio.testing.MockClock, burst: int | None, margin: float
) -> None:
    """Many writers at both priorities, some giving up while they wait, arriving in waves:
    whatever the pattern, no sliding second holds more than 10 grants, and the limiter
    still uses the window (everything is granted in about 100 / 10 seconds)."""
    limiter = RateLimiter(rate=10, burst=burst, margin=margin)
    rng = random.Random(7)
    grants: list[float] = []
    start = trio.current_time()

    async def writer(n: int) -> None:
        await trio.sleep(rng.choice([0.0, 0.0, 0.05, 0.33, 0.9, 1.0, 2.5]) * (n % 4))
        priority = Priority.ROLLBACK if n % 3 == 0 else Priority.NORMAL
        for _ in range(5):
            if n % 7 == 0:
                with trio.move_on_after(rng.random()):
                    await limiter.acquire(priority)
                    grants.append(trio.current_time() - start)
            else:
                await limiter.acquire(priority)
                grants.append(trio.current_time() - start)
            await trio.sleep(rng.choice([0.0, 0.0, 0.01, 0.1, 0.5]))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for n in range(25):
                nursery.start_soon(writer, n)
    assert limiter.statistics().waiting == 0
    assert limiter.statistics().granted == len(grants) >= 100
    assert _most_in_one_window(grants, 1.0 + margin) <= 10
    assert _most_in_one_window(grants) == 10  # the window is used, not wasted
    assert max(grants) < (len(grants) / 10) * (1.0 + margin) + 3


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


async def test_a_rollback_at_the_venue_draws_no_429(
    nursery: trio.Nursery, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """10 legs take the whole second; the 10th is rejected, so the 9 filled legs need 9 reverse
    orders at once. The venue (like Kite) counts a sliding second: the reverses must wait for
    the first second to pass, not go out on a refilled bucket and be refused with 429s."""
    venue = await start_venue(nursery, rate_limit_per_s=10)
    refused: list[str] = []
    with trio.fail_after(30):
        async with open_desk(venue, sqlite_url) as desk:
            await desk.faults(reject_symbols=[BANKNIFTY_FUT])
            broker = desk.actor.broker
            real_place, real_cancel = broker.place, broker.cancel

            async def place(request: OrderRequest) -> str:
                try:
                    return await real_place(request)
                except RateLimited:
                    refused.append(f"place {request.tag}")
                    raise

            async def cancel(order_id: str, **options: Any) -> str:
                try:
                    return await real_cancel(order_id, **options)
                except RateLimited:
                    refused.append(f"cancel {order_id}")
                    raise

            monkeypatch.setattr(broker, "place", place)
            monkeypatch.setattr(broker, "cancel", cancel)
            body = {"orders": [leg()] * 9 + [leg(BANKNIFTY_FUT, "SELL", 35)]}
            status, result = await desk.submit(body)
            assert status == 200 and result["status"] == "rolled_back", result
            assert refused == []
            assert await desk.positions() == {}
            venue_tags = tags(await desk.orders())
            assert set(venue_tags.values()) == {1}
            assert len([t for t in venue_tags if t[-2] == "R"]) == 9
