"""Exits over the real paper venue: one position flattened through the kill switch's flatten
(market-protected, split at the freeze quantity, the position's product, tagged), the others
left alone; an Idempotency-Key retried answers the first report and sends nothing; no such
position is 404, an exit while the kill switch runs is 409.

Outcomes are asserted at the venue (its `/orders` and `/portfolio/positions`).
"""

from __future__ import annotations

import trio
import trio.testing

from actors.orders import exit_id, exit_tag
from actors.requests import ExitRequest
from tests.fixtures_desk import Desk, place
from tests.fixtures_orders import leg
from tests.fixtures_venue import BANKNIFTY_FUT, NIFTY_FUT, market_form
from tests.fixtures_waits import wait_until
from tests.fixtures_web import replied, typed


def exit_body(symbol: str = NIFTY_FUT, product: str = "NRML") -> dict[str, str]:
    return {"exchange": "NFO", "tradingsymbol": symbol, "product": product}


async def exit_position(desk: Desk, body: dict, key: str | None = None) -> tuple[int, dict]:
    return await replied(desk.coordinator.exit_position("primary", *typed(body, ExitRequest),
                                                        "test", key))


async def held(desk: Desk, expected: dict[str, int]) -> None:
    """Wait until the venue lists exactly these net positions."""

    async def reached() -> bool:
        return await desk.positions() == expected

    await wait_until(reached, f"positions {expected}", 10, poll_s=0.02)


async def test_exit_flattens_one_position_split_at_the_freeze_quantity(desk: Desk) -> None:
    """A short BANKNIFTY of 1050 (freeze 600, lot 35) goes out as two BUYs, 595 then 455 (whole
    lots), NRML, tagged as an exit; the NIFTY position is left alone."""
    with trio.fail_after(30):
        for _ in range(2):
            await place(desk, market_form(tradingsymbol=BANKNIFTY_FUT, quantity=525,
                                          transaction_type="SELL"))
        await place(desk, market_form(quantity=75))
        await held(desk, {BANKNIFTY_FUT: -1050, NIFTY_FUT: 75})
        status, report = await exit_position(desk, exit_body(BANKNIFTY_FUT), key="exit-1")
        assert status == 200, report
        assert report["status"] == "done" and report["remaining"] == 0, report
        assert report["quantity"] == -1050 and report["product"] == "NRML"
        assert [o["filled_quantity"] for o in report["orders"]] == [595, 455]
        prefix = exit_tag(exit_id("primary", "exit-1"))
        assert all(o["tag"].startswith(prefix) and o["status"] == "COMPLETE"
                   for o in report["orders"])
        assert await desk.positions() == {NIFTY_FUT: 75}
        sent = [o for o in await desk.orders() if (o["tag"] or "").startswith(prefix)]
        assert {(o["transaction_type"], o["product"], o["order_type"]) for o in sent} == {
            ("BUY", "NRML", "MARKET")}
        assert all(o["market_protection"] for o in sent), sent


async def test_a_retried_key_answers_the_first_exit_and_sends_nothing(desk: Desk) -> None:
    with trio.fail_after(30):
        await place(desk, market_form(quantity=150))
        await held(desk, {NIFTY_FUT: 150})
        first = await exit_position(desk, exit_body(), key="again")
        assert first[0] == 200 and first[1]["status"] == "done", first
        before = len(await desk.orders())
        status, replay = await exit_position(desk, exit_body(), key="again")
        assert status == 200 and replay["replayed"] is True, replay
        assert replay["orders"] == first[1]["orders"]
        conflict = await exit_position(desk, exit_body(BANKNIFTY_FUT), key="again")
        assert conflict[0] == 409 and conflict[1]["error"] == "idempotency_conflict", conflict
        assert len(await desk.orders()) == before


async def test_no_such_position_is_404_and_a_bad_body_422(desk: Desk) -> None:
    with trio.fail_after(30):
        await place(desk, market_form(quantity=75))
        await held(desk, {NIFTY_FUT: 75})
        status, body = await exit_position(desk, exit_body(product="MIS"))
        assert status == 404 and body["error"] == "not_found", body
        assert "NRML" not in body["message"] and "MIS" in body["message"]
        status, body = await exit_position(desk, exit_body(BANKNIFTY_FUT))
        assert status == 404, body
        status, body = await exit_position(desk, {"exchange": "NFO", "product": "X"})
        assert status == 422, body
        assert {f["path"] for f in body["fields"]} == {"tradingsymbol", "product"}, body
        assert await desk.positions() == {NIFTY_FUT: 75}


async def test_an_exit_while_the_kill_switch_runs_is_409(desk: Desk) -> None:
    with trio.fail_after(30):
        await place(desk, market_form(quantity=75))
        await held(desk, {NIFTY_FUT: 75})
        await desk.faults(latency_ms=300)  # the kill switch takes a while
        killed: list[tuple[int, dict]] = []

        async def kill() -> None:
            killed.append(await replied(desk.coordinator.kill("primary", "test")))

        async with trio.open_nursery() as inner:
            inner.start_soon(kill)
            await trio.testing.wait_all_tasks_blocked()
            assert desk.coordinator.killing("primary")
            status, body = await exit_position(desk, exit_body())
            assert status == 409 and body["error"] == "kill_in_progress", body
        assert killed[0][0] == 200 and killed[0][1]["status"] == "done", killed
        await desk.faults(latency_ms=0)
        assert await desk.positions() == {}


async def test_an_exit_while_a_batch_trades_the_instrument_is_409(desk: Desk) -> None:
    """A batch's LIMIT leg rests in the instrument (then its rollback cancels it): an exit
    meanwhile could flatten what the rollback flattens, so it is refused, sending nothing."""
    with trio.fail_after(30):
        await place(desk, market_form(quantity=75))
        await held(desk, {NIFTY_FUT: 75})
        results: list[tuple[int, dict]] = []

        async def submit() -> None:
            results.append(await desk.submit(
                {"orders": [leg(order_type="LIMIT", price=20000.0)], "timeout_s": 1}))

        async with trio.open_nursery() as inner:
            inner.start_soon(submit)

            async def resting() -> bool:
                return any(o["status"] == "OPEN" for o in await desk.orders())

            await wait_until(resting, "the batch's leg resting", 10, poll_s=0.02)
            status, body = await exit_position(desk, exit_body())
            assert status == 409 and body["error"] == "position_busy", body
            assert "retry" in body["message"]
        assert results[0][1]["status"] == "rolled_back", results
        assert await desk.positions() == {NIFTY_FUT: 75}
        status, body = await exit_position(desk, exit_body())
        assert status == 200 and body["status"] == "done", body
