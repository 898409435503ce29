"""The per-account order-rate limiter: a sliding window like the broker's, with priorities and
clean cancellation (autojump clock); and, at the paper venue with its own rate limit on, a
rollback path that never draws a 429."""

from __future__ import annotations

import random
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from actors.ratelimit import Priority, RateLimiter
from brokers.base import OrderRequest, RateLimited
from tests.fixtures_desk import FAST, open_desk
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


async def test_a_write_counts_from_its_answer_not_its_grant(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The broker counts a write when it arrives, at most when it is answered: a write
    answered 0.3 s after its grant holds its place in the second until 1.3 s."""
    limiter = RateLimiter(rate=2)
    start = trio.current_time()
    first = await limiter.acquire()
    second = await limiter.acquire()
    await trio.sleep(0.1)
    limiter.answered(second)  # answered at 0.1: counts from 0.1
    await trio.sleep(0.2)
    limiter.answered(first)  # answered at 0.3, after the second: the window stays in order
    limiter.answered(first)  # once more, or a stamp gone from the window: nothing happens
    times = []
    for _ in range(2):
        await limiter.acquire()
        times.append(trio.current_time() - start)
    assert times == [pytest.approx(1.1), pytest.approx(1.3)]


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


async def test_new_orders_wait_while_a_rollback_runs(
    mock_clock: trio.testing.MockClock,
) -> None:
    """`undoing`: a new order queued before any reverse is not granted while the rollback runs,
    even once the window has room; a reverse is."""
    limiter = RateLimiter(rate=10)
    served: list[tuple[str, float]] = []

    async def take(name: str, priority: Priority) -> None:
        await limiter.acquire(priority)
        served.append((name, trio.current_time()))

    async with trio.open_nursery() as nursery:
        with limiter.undoing():
            nursery.start_soon(take, "leg", Priority.NORMAL)
            mock_clock.jump(2)  # the window is empty: only the rollback holds it back
            await trio.testing.wait_all_tasks_blocked()
            assert served == []
            nursery.start_soon(take, "reverse", Priority.ROLLBACK)
            await trio.testing.wait_all_tasks_blocked()
            assert [name for name, _ in served] == ["reverse"]
    assert [name for name, _ in served] == ["reverse", "leg"]
    assert served[1][1] == served[0][1]  # granted as soon as the rollback was over


async def test_a_write_refused_with_429_holds_everyone_and_keeps_its_place(
    mock_clock: trio.testing.MockClock,
) -> None:
    """`hold`: after a 429 nobody is granted anything for a while; the refused reverse asks
    again at once and still goes before the new orders that queued meanwhile (a burst of 1:
    one grant every 0.1 s, so the order of grants shows)."""
    limiter = RateLimiter(rate=10, burst=1)
    served: list[tuple[str, float]] = []

    async def take(name: str, priority: Priority) -> None:
        await limiter.acquire(priority)
        served.append((name, trio.current_time()))

    await limiter.acquire(Priority.ROLLBACK)  # the reverse's first try: refused (429)
    start = trio.current_time()
    limiter.hold(0.5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(take, "leg", Priority.NORMAL)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(take, "reverse again", Priority.ROLLBACK)
        mock_clock.jump(0.4)
        await trio.testing.wait_all_tasks_blocked()
        assert served == []  # the burst is back after 0.1 s, yet nothing during the hold
        mock_clock.jump(0.1)
        await trio.testing.wait_all_tasks_blocked()
        assert [name for name, _ in served] == ["reverse again"]
        mock_clock.jump(0.1)
    assert [name for name, _ in served] == ["reverse again", "leg"]
    assert served[0][1] - start == pytest.approx(0.5)


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


async def test_every_reverse_of_a_rollback_goes_out_before_the_queued_legs_of_another_batch(
    nursery: trio.Nursery, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch A takes the whole second with 10 legs, its 10th rejected: its 9 filled legs need 9
    reverse orders. Batch B (10 more legs) comes in meanwhile and its legs queue for the next
    second too. When the second slides, the rollback's reverses get every grant before any leg
    of B: exposure is undone before new risk goes out (`Priority.ROLLBACK`, `undoing`). No
    margin check, so that B's legs are surely queued before the second slides."""
    venue = await start_venue(nursery, rate_limit_per_s=10)
    with trio.fail_after(30):
        async with open_desk(venue, sqlite_url, attrs.evolve(FAST, margin_check=False)) as desk:
            await desk.faults(reject_symbols=[BANKNIFTY_FUT])
            limiter = desk.coordinator.limiter("primary")
            assert limiter is not None
            broker = desk.actor.broker
            real_place = broker.place
            placed: list[tuple[str, int]] = []  # tag, writes waiting for a grant meanwhile
            second_full = trio.Event()  # the first batch's 10 legs took the whole second

            async def place(request: OrderRequest) -> str:
                placed.append((request.tag or "", limiter.statistics().waiting))
                if len(placed) == 10:
                    second_full.set()
                return await real_place(request)

            monkeypatch.setattr(broker, "place", place)
            sides = ["BUY", "SELL"] * 5
            first = {"orders": [leg(side=s) for s in sides[:9]] + [leg(BANKNIFTY_FUT, "SELL", 35)]}
            second = {"orders": [leg(side=s) for s in sides]}
            answers: dict[str, tuple[int, dict[str, Any]]] = {}

            async def submit(name: str, body: dict[str, Any]) -> None:
                answers[name] = await desk.submit(body)

            async with trio.open_nursery() as batches:
                batches.start_soon(submit, "first", first)
                await second_full.wait()
                batches.start_soon(submit, "second", second)
            assert answers["first"][1]["status"] == "rolled_back", answers["first"]
            assert answers["second"][1]["status"] == "success", answers["second"]
            first_id, second_id = answers["first"][1]["batch_id"], answers["second"][1]["batch_id"]
            order = [tag for tag, _ in placed]
            reverses = [k for k, tag in enumerate(order) if tag.startswith(f"od{first_id}")
                        and tag[-2] == "R"]
            queued = [k for k, tag in enumerate(order) if tag.startswith(f"od{second_id}")]
            # (a write the venue refused with 429 is asked again: its tag shows twice)
            assert len({order[k] for k in reverses}) == 9, order
            assert len({order[k] for k in queued}) == 10, order
            # The second batch's legs were already waiting (with the other reverses) when the
            # first reverse went out, and every reverse went out before any of them.
            assert placed[reverses[0]][1] >= 10, placed
            assert max(reverses) < min(queued), order
            assert await desk.positions() == {}
