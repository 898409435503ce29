"""A slow store never leaves real positions open (issue 11).

The store is made slow on purpose with a real lock: a second Postgres connection holds
`batches` and `batch_legs` in ACCESS EXCLUSIVE mode while a batch that must roll back runs, so
every write of the batch waits. The rollback must still place its reverse orders (after a short
bound on their write-ahead), the client must get the outcome the batch reached (never
`running`), the venue must be flat, and once the lock is gone the stored batch must be final,
its reverse order's row included. Everything else is real: the paper venue, the actor, Postgres.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
import trio

from store import FINAL_BATCH_STATUSES
from tests.fixtures_desk import FAST, Desk, open_desk
from tests.fixtures_orders import leg
from tests.fixtures_store import locked_tables
from tests.fixtures_venue import BANKNIFTY_FUT, start_venue
from tests.fixtures_waits import wait_until
from tests.fixtures_web import replied

SLOW_STORE = attrs.evolve(FAST, store_timeout_s=0.3, reverse_write_ahead_s=0.2,
                          store_retry_max_s=0.2)


async def _placed(desk: Desk) -> None:
    """Until the market leg is COMPLETE and the LIMIT leg rests OPEN at the venue."""
    async def placed() -> bool:
        return sorted(o["status"] for o in await desk.orders()) == ["COMPLETE", "OPEN"]

    await wait_until(placed, "one leg COMPLETE, one OPEN", math.inf, poll_s=0.02)


async def _stored_final(desk: Desk, batch_id: str) -> tuple[Any, list[Any]]:
    async def final() -> tuple[Any, list[Any]] | None:
        found = await desk.store.get_batch(batch_id)
        assert found is not None
        if found[0].status in FINAL_BATCH_STATUSES and any(
                r.kind == "reverse" and r.status == "COMPLETE" for r in found[1]):
            return found
        return None

    return await wait_until(final, "the batch final in the store", math.inf)


@pytest.mark.parametrize("tables", [
    ("batches", "batch_legs"),
    ("batches", "batch_legs", "order_events"),  # the account's update log too: legs then see
    # their fills by polling the broker, not through committed updates
])
async def test_a_rollback_under_a_locked_store_flattens_and_answers_its_outcome(
    nursery: trio.Nursery, aio_loop: Any, pg_url: str, tables: tuple[str, ...]
) -> None:
    venue = await start_venue(nursery)
    replies: list[tuple[int, dict[str, Any]]] = []
    answered = trio.Event()
    with trio.fail_after(30):
        async with open_desk(venue, pg_url, SLOW_STORE) as desk:

            async def submit() -> None:
                # The LIMIT BUY rests far below the market: the deadline rolls the batch back.
                body = {"orders": [leg(BANKNIFTY_FUT, quantity=35),
                                   leg(order_type="LIMIT", price=20000.0)], "timeout_s": 2}
                replies.append(await desk.submit(body))
                answered.set()

            desk.nursery.start_soon(submit)
            await _placed(desk)
            async with locked_tables(pg_url, *tables):
                assert not answered.is_set()  # the lock is taken before the rollback begins
                with trio.fail_after(10):  # main waited on the lock for the reverse's row
                    await answered.wait()
                [(status, result)] = replies
                assert status == 200 and result["status"] == "rolled_back", result
                market, limit = result["legs"]
                assert market["rollback"]["action"] == "flattened", market
                assert market["rollback"]["filled"] == 35 and market["rollback"]["remaining"] == 0
                assert limit["rollback"]["action"] == "cancelled", limit
                assert await desk.positions() == {}  # flat while the store is still locked
                # Asked meanwhile, the batch answers its outcome from memory, not `running`.
                stored = await replied(desk.coordinator.get("primary", result["batch_id"]))
                assert stored == (200, result)
            batch, records = await _stored_final(desk, result["batch_id"])
            assert batch.status == "rolled_back" and batch.result == result
            reverse = next(r for r in records if r.kind == "reverse")
            assert reverse.tag == f"od{result['batch_id']}0R0"
            assert reverse.order_id == market["rollback"]["order_id"]
            assert await desk.store.unfinished_batches() == []
