"""The whole order budget (issue 12, item 1): Kite's minute and day counts with a reserve.

Kite counts order writes per user: 10 a second, 200 a minute, 3,000 a day. The gateway keeps
the minute and the day per account, leaves a reserve of each to rollbacks and the kill switch,
and refuses a batch that does not fit (503 `order_budget`, `Retry-After`) before placing
anything. The venue enforces the same limits with Kite's 429, so overrunning them shows.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import trio

from actors.budget import IST, BudgetExhausted, BudgetLimits, OrderBudget
from actors.ratelimit import Priority
from supervision.settings import ConfigError, load_settings
from tests.fixtures_service import api, open_test_service, venue_control, write_config
from tests.fixtures_venue import BANKNIFTY_FUT, NIFTY_FUT


def _future(symbol: str = NIFTY_FUT, quantity: int = 75) -> dict[str, Any]:
    return {"tradingsymbol": symbol, "exchange": "NFO", "transaction_type": "BUY",
            "quantity": quantity, "order_type": "MARKET", "product": "NRML",
            "market_protection": -1}


def _batch(legs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"orders": legs, "rollback_on_failure": True, "timeout_s": 10}


async def test_three_batches_at_20_a_minute_and_40_a_day(tmp_path: Path) -> None:
    """A fits; B (after the minute slid) is rolled back from the reserve; C is refused."""
    with trio.fail_after(120):
        async with open_test_service(
            tmp_path,
            venue_toml="rate_limit_per_minute = 20\nrate_limit_per_day = 40",
            limits_toml="orders_per_minute = 20\norders_per_day = 40\nreserve = 10",
        ) as running, api(running) as http, venue_control(running) as venue:
            budget = running.batches.limiter("primary")
            assert budget is not None
            first = await http.post("/accounts/primary/batch-orders",
                                    json=_batch([_future()] * 10))
            assert first.status_code == 200 and first.json()["status"] == "success", first.text

            # The minute has room for no more new risk (20 less the reserve of 10): wait for it
            # to slide rather than being refused.
            refused = await http.post("/accounts/primary/batch-orders",
                                      json=_batch([_future()] * 10))
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"] == "order_budget"
            assert 1 <= int(refused.headers["Retry-After"]) <= 61
            await budget.room_for(10)  # the minute slides 60 s after A's writes

            await venue.post("/_venue/faults", json={"reject_symbols": [BANKNIFTY_FUT]})
            second = await http.post("/accounts/primary/batch-orders",
                                     json=_batch([_future()] * 9 + [_future(BANKNIFTY_FUT, 35)]))
            assert second.status_code == 200, second.text
            result = second.json()
            assert result["status"] == "rolled_back", result
            flattened = [leg for leg in result["legs"]
                         if (leg.get("rollback") or {}).get("action") == "flattened"]
            assert len(flattened) == 9, result["legs"]  # 10 writes + 9 reverses: 19 this minute

            third = await http.post("/accounts/primary/batch-orders",
                                    json=_batch([_future()] * 10))
            assert third.status_code == 503, third.text
            body = third.json()
            assert body["error"] == "order_budget" and body["reason"] == "order_budget"
            assert "day" in body["message"] and "nothing was placed" in body["message"]
            assert int(third.headers["Retry-After"]) >= 1

            limits = (await venue.get("/_venue/limits")).json()["data"]
            assert limits["refused"] == {}, limits  # no 429 on any write
            orders = (await http.get("/accounts/primary/orders")).json()
            assert len(orders["orders"] if isinstance(orders, dict) else orders) == 29


# -- the budget on its own (in-process: autojump) ---------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 30, 15, 0, tzinfo=IST)

    def __call__(self) -> dt.datetime:
        return self.now


LIMITS = BudgetLimits(per_second=100, per_minute=10, per_day=15, reserve=3, margin_s=0.0)


async def test_new_risk_leaves_the_reserve_to_rollbacks(autojump_clock: trio.abc.Clock) -> None:
    budget = OrderBudget(LIMITS, clock=_Clock())
    for _ in range(7):
        await budget.acquire(Priority.NORMAL)
    assert budget.room(1).minute == 0 and budget.room(1).minute_wait_s == pytest.approx(60)
    start = trio.current_time()
    for _ in range(3):  # the reserve: at once
        await budget.acquire(Priority.ROLLBACK)
    assert trio.current_time() == start
    await budget.acquire(Priority.ROLLBACK)  # the minute is full: waits for it to slide
    assert trio.current_time() - start == pytest.approx(60)


async def test_room_for_waits_until_the_minute_slid(autojump_clock: trio.abc.Clock) -> None:
    budget = OrderBudget(LIMITS, clock=_Clock())
    start = trio.current_time()
    assert (await budget.room_for(7)).minute == 7 and trio.current_time() == start
    for _ in range(7):
        await budget.acquire(Priority.NORMAL)
    room = await budget.room_for(2)
    assert trio.current_time() - start == pytest.approx(60)
    assert room.minute == 7 and room.minute_wait_s == 0


async def test_a_write_counts_in_the_minute_from_its_answer(
    autojump_clock: trio.abc.Clock
) -> None:
    """Kite counts a write when it arrives, after the grant: a write answered 2 s after its
    grant holds its place in the minute until 62 s, and the window stays in order."""
    budget = OrderBudget(LIMITS, clock=_Clock())
    start = trio.current_time()
    grants = [await budget.acquire(Priority.NORMAL) for _ in range(7)]
    await trio.sleep(2)
    budget.answered(grants[0])  # answered at 2 s; the others at their grant
    for granted_at in grants[1:]:
        budget.answered(granted_at - 1)  # a stamp not in the window: nothing happens
    await budget.acquire(Priority.NORMAL)  # at 60 s six leave the minute; the answered one stays
    assert trio.current_time() - start == pytest.approx(60)
    assert budget.room(5).minute_wait_s == 0
    assert budget.room(6).minute_wait_s == pytest.approx(2)  # the answered write leaves at 62 s


async def test_the_day_refuses_new_risk_then_rollbacks(autojump_clock: trio.abc.Clock) -> None:
    clock = _Clock()
    budget = OrderBudget(LIMITS, clock=clock)
    for _ in range(12):
        await budget.acquire(Priority.NORMAL)
    assert budget.room(1).day == 0
    with pytest.raises(BudgetExhausted, match="nothing was sent"):
        await budget.acquire(Priority.NORMAL)
    for _ in range(3):
        await budget.acquire(Priority.ROLLBACK)
    with pytest.raises(BudgetExhausted):
        await budget.acquire(Priority.ROLLBACK)
    clock.now += dt.timedelta(days=1)  # IST midnight: a new day's budget
    await budget.acquire(Priority.NORMAL)
    assert budget.room(1).day == 11


def test_limits_settings_are_checked(tmp_path: Path) -> None:
    for toml, message in (
        ("reserve = 300", "limits.reserve: must be below limits.orders_per_minute"),
        ("orders_per_minute = -1", "limits.orders_per_minute: must be a whole number >= 0"),
        ("orders_per_s = 0", "limits.orders_per_s: must be a whole number >= 1"),
        ("bogus = 1", "limits.bogus: not a known limit"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_settings(str(write_config(tmp_path, limits_toml=toml)), environ={})
    settings = load_settings(str(write_config(tmp_path)), environ={})
    assert (settings.limits.orders_per_minute, settings.limits.orders_per_day,
            settings.limits.reads_per_s) == (200, 3000, 10)
