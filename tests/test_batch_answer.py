"""A batch answers `success` once every leg is COMPLETE, not once its place calls have answered
and everything is stored (`actors/orders/answer.py`): the venue pushes a fill before it answers
the POST (its `latency_ms` holds the answer back), and the push names the order. The answer is
the one stored afterwards; a place call failing after its order was pushed COMPLETE leaves the
leg COMPLETE. Real paper venue and SQLite store, the coordinator in-process."""

from __future__ import annotations

import logging
from typing import Any

import attrs
import pytest
import trio

from brokers.base import BrokerError, BrokerUnavailable, OrderRejected, OrderRequest
from tests.fixtures_desk import Desk
from tests.fixtures_orders import leg
from tests.fixtures_venue import BANKNIFTY_FUT, NIFTY_CE, NIFTY_FUT
from tests.fixtures_waits import wait_until
from tests.fixtures_web import replied

LATENCY_S = 1.0
BODY = {"orders": [leg(), leg(BANKNIFTY_FUT, "SELL", 35)]}


async def warm(desk: Desk) -> None:
    """The instrument master loaded, so the timed batch pays only its own round trips."""
    status, warmed = await desk.submit({"orders": [leg(NIFTY_CE)]})
    assert status == 200 and warmed["status"] == "success", warmed


async def test_a_batch_answers_once_its_fills_are_pushed_and_stores_that_answer(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    await warm(desk)
    await desk.faults(latency_ms=int(LATENCY_S * 1000))
    answered: list[str] = []  # each place call that had its answer
    real_place = desk.actor.broker.place

    async def place(request: OrderRequest) -> str:
        order_id = await real_place(request)
        answered.append(order_id)
        return order_id

    monkeypatch.setattr(desk.actor.broker, "place", place)
    with trio.fail_after(20):
        started = trio.current_time()
        status, result = await desk.submit(BODY, "early-1")
        elapsed = trio.current_time() - started
        assert status == 200 and result["status"] == "success", result
        # The margin answer (one latency), then the legs' pushes: not their POSTs' answers.
        assert answered == [] and LATENCY_S <= elapsed < 2 * LATENCY_S, (answered, elapsed)
        assert [row["status"] for row in result["legs"]] == ["COMPLETE", "COMPLETE"]
        venue = {o["tag"]: o["order_id"] for o in await desk.orders()}
        assert result["order_ids"] == [venue[row["tag"]] for row in result["legs"]]
        # Asked meanwhile, the answer comes from memory; the store catches up with it.
        assert await replied(desk.coordinator.get("primary", result["batch_id"])) == (
            200, result)
        batch, legs = await wait_until(
            lambda: _final(desk, result["batch_id"]), "the final status stored")
        assert sorted(answered) == sorted(result["order_ids"])
    assert batch.status == "success"
    assert batch.result == {k: v for k, v in result.items() if v is not None}
    assert [(row.status, row.order_id) for row in legs] == [
        ("COMPLETE", order_id) for order_id in result["order_ids"]]


async def _final(desk: Desk, batch_id: str) -> Any:
    found = await desk.store.get_batch(batch_id)
    return found if found is not None and found[0].status == "success" else None


@attrs.frozen
class LateFailure:
    """A place call that fails after its order was made and pushed COMPLETE."""

    name: str
    error: BrokerError
    logged: str


LATE_FAILURES = [
    LateFailure("5xx", BrokerUnavailable("500 GeneralException"), "is known from its push"),
    LateFailure("refused", OrderRejected("refused after all"), "yet placing it said"),
]


@pytest.mark.parametrize("failure", LATE_FAILURES, ids=lambda f: f.name)
async def test_a_leg_pushed_complete_stays_complete_when_its_place_call_fails_after(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    failure: LateFailure,
) -> None:
    await warm(desk)
    await desk.faults(latency_ms=1000)  # the fill is pushed long before the POST answers
    real_place = desk.actor.broker.place

    async def place(request: OrderRequest) -> str:
        await real_place(request)
        raise failure.error

    monkeypatch.setattr(desk.actor.broker, "place", place)
    caplog.set_level(logging.WARNING, "actors.batch")
    with trio.fail_after(20):
        status, result = await desk.submit(BODY)
        assert status == 200 and result["status"] == "success", result
        venue = {o["tag"]: o for o in await desk.orders()}
        assert [venue[row["tag"]]["status"] for row in result["legs"]] == ["COMPLETE"] * 2
        assert result["order_ids"] == [venue[row["tag"]]["order_id"] for row in result["legs"]]
        batch, legs = await wait_until(
            lambda: _final(desk, result["batch_id"]), "the final status stored")
    assert [(row.status, row.order_id) for row in legs] == [
        ("COMPLETE", order_id) for order_id in result["order_ids"]]
    positions = await desk.positions()
    assert (positions[NIFTY_FUT], positions[BANKNIFTY_FUT]) == (75, -35), positions
    assert sum(failure.logged in r.getMessage() for r in caplog.records) == 2, caplog.text


async def test_a_leg_pushed_open_is_cancelled_when_its_place_call_is_refused_after(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """The push named a working order before the POST said "refused": the order is the
    broker's word, so the rollback cancels it (it is not taken for never placed)."""
    await warm(desk)
    await desk.faults(latency_ms=600, fill_delay_ms=60_000)  # pushed OPEN, answered late
    real_place = desk.actor.broker.place

    async def place(request: OrderRequest) -> str:
        await real_place(request)
        raise OrderRejected("refused after all")

    monkeypatch.setattr(desk.actor.broker, "place", place)
    caplog.set_level(logging.WARNING, "actors.batch")
    with trio.fail_after(20):
        status, result = await desk.submit(BODY)
        assert status == 200 and result["status"] == "rolled_back", result
        venue = {o["tag"]: o for o in await desk.orders()}
    assert [venue[row["tag"]]["status"] for row in result["legs"]] == ["CANCELLED"] * 2
    assert result["order_ids"] == [venue[row["tag"]]["order_id"] for row in result["legs"]]
    assert [row["rollback"]["action"] for row in result["legs"]] == ["cancelled"] * 2, result
    positions = await desk.positions()
    assert (positions.get(NIFTY_FUT), positions.get(BANKNIFTY_FUT)) == (None, None), positions
    # (the first refusal cancels the other leg's task: its refusal may go unheard)
    assert any("yet placing it said" in r.getMessage() for r in caplog.records), caplog.text
