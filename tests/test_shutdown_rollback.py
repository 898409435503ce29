"""Shutdown's grace is binding, also for a rollback in progress (in-process, `open_service`).

A batch fails (leg 1 rejected) while leg 0 is half filled; its rollback is slow: every Kite REST
answer is held back (`latency_ms`) and the reverse order only half fills, so the rollback would
wait for it until `rollback_timeout_s`. Shutdown with a small grace must not wait for that: the
service is down within the grace plus one shielded call's timeout, the call in flight finished
and stored, the batch stored unfinished (no final status), a warning naming what was left.

The paper venue runs in the test's nursery, so it outlives the service. The second start's
recovery resumes the rollback (the working reverse found by its `R` tag and cancelled, a new
reverse for the rest) and is itself cut short by shutdown while that reverse is working (its fill
delayed); the third start finishes it: net positions flat, every tag placed once.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from actors.batch import BatchConfig
from brokers.paper import VenueAddress
from store import open_store
from supervision.service import Running
from tests.fixtures_desk import connected
from tests.fixtures_orders import leg, tags
from tests.fixtures_service import api, open_test_service
from tests.fixtures_venue import BANKNIFTY_FUT, kite_http
from tests.fixtures_waits import wait_until

BATCHES = BatchConfig(
    place_timeout_s=2.0, lookup_timeout_s=3.0, poll_interval_s=0.2, deadline_check_s=0.1,
    rollback_timeout_s=60.0, cleanup_grace_s=0.5, session=None,
)
LATENCY_MS = 400  # every REST call of the rollback takes this long
GRACE_S = 0.3
# The grace, then at most one shielded call in flight (its own timeout) and its stored outcome.
BOUND_S = GRACE_S + BATCHES.place_timeout_s + 1.5
UNFINISHED = ("running", "rolling_back")
FINAL = ("success", "rolled_back", "partial", "rollback_failed")
BODY = {"orders": [leg(quantity=300), leg(BANKNIFTY_FUT, quantity=35)], "timeout_s": 10}


until = functools.partial(wait_until, timeout_s=20)


async def test_grace_over_cuts_a_slow_rollback_short_and_the_next_start_finishes_it(
    tmp_path: Path, venue: VenueAddress, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="actors.batch")
    primary = f'rest_url = "{venue.rest_url}"\nticker_url = "{venue.ticker_url}"'
    options: dict[str, Any] = {"account_toml": {"primary": primary}, "batch_config": BATCHES}
    answers: list[httpx.Response] = []

    async def submit(running: Running) -> None:
        async with api(running) as http:
            try:
                answers.append(await http.post("/accounts/primary/batch-orders", json=BODY,
                                               timeout=60))
            except httpx.HTTPError:
                pass  # the service going down may cut the answer

    async with (
        kite_http(venue) as kite,
        httpx.AsyncClient(base_url=venue.rest_url, timeout=10) as control,
    ):

        async def faults(**values: Any) -> None:
            assert (await control.delete("/_venue/faults")).status_code == 200
            if values:
                response = await control.post("/_venue/faults", json=values)
                assert response.status_code == 200, response.text

        async def venue_orders() -> dict[str, dict[str, Any]]:
            response = await kite.get("/orders")
            assert response.status_code == 200, response.text
            return {o["tag"]: o for o in response.json()["data"] if o.get("tag")}

        async def working(tag: str, filled: int) -> dict[str, Any]:
            """Wait until the venue shows the order `tag` OPEN with `filled` units filled."""

            async def check() -> dict[str, Any] | None:
                order = (await venue_orders()).get(tag)
                if order and order["status"] == "OPEN" and order["filled_quantity"] == filled:
                    return order
                return None

            found: dict[str, Any] = await until(check, f"{tag} working, {filled} filled")
            return found

        async def shut_down_during(
            start: Callable[[Running], Awaitable[tuple[str, dict[str, Any]]]],
        ) -> tuple[str, dict[str, Any]]:
            """Start the service, run `start` (until a reverse is working), leave: the
            shutdown is over within BOUND_S and the batch stays stored `rolling_back`, with
            the reverse's placement stored and a warning naming it."""
            with trio.fail_after(math.inf) as bound:  # set when the shutdown begins
                async with open_test_service(tmp_path, grace_s=GRACE_S, **options) as running:
                    batch_id, reverse = await start(running)
                    began = trio.current_time()
                    bound.deadline = began + BOUND_S
            elapsed = trio.current_time() - began
            assert elapsed < BOUND_S, elapsed
            async with open_store(f"sqlite:///{tmp_path}/od.db") as store:
                found = await store.get_batch(batch_id)
            assert found is not None
            batch, records = found
            assert batch.status == "rolling_back" and batch.result is None, batch
            stored = {r.tag: r for r in records}[reverse["tag"]]
            assert stored.kind == "reverse" and stored.order_id == reverse["order_id"], stored
            warnings = [r.getMessage() for r in caplog.records
                        if r.levelno == logging.WARNING and batch_id in r.getMessage()]
            assert any("cut short by shutdown during its rollback" in m
                       and f"reverse order {reverse['order_id']} working" in m
                       for m in warnings), warnings
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
            caplog.clear()
            return batch_id, reverse

        with trio.fail_after(90):
            # -- first start: the batch fails; shutdown comes while its reverse half fills
            await faults(reject_symbols=[BANKNIFTY_FUT], partial_fill_ratio=0.5,
                         latency_ms=LATENCY_MS)
            async with trio.open_nursery() as nursery:

                async def first(running: Running) -> tuple[str, dict[str, Any]]:
                    await connected(running.actors["primary"])
                    nursery.start_soon(submit, running)

                    async def rolling_back() -> str | None:
                        found = await running.store.unfinished_batches()
                        if found and found[0][0].status == "rolling_back":
                            return found[0][0].batch_id
                        return None

                    batch_id: str = await until(rolling_back, "the batch is rolling back")
                    return batch_id, await working(f"od{batch_id}0R0", 75)

                batch_id, r0 = await shut_down_during(first)
            for answer in answers:  # if the client got an answer, it says "unfinished"
                assert answer.status_code == 200, answer.text
                assert answer.json()["status"] in UNFINISHED, answer.json()
            left = await venue_orders()  # leg 0 cancelled half filled, the reverse working
            assert (left[f"od{batch_id}0L0"]["status"],
                    left[f"od{batch_id}0L0"]["filled_quantity"]) == ("CANCELLED", 150)

            # -- second start: recovery cancels R0 (75 flattened), places R1 for the other 75,
            #    whose fill is delayed: shutdown cuts this rollback short too
            await faults(fill_delay_ms=600_000, latency_ms=LATENCY_MS)

            async def second(running: Running) -> tuple[str, dict[str, Any]]:
                return batch_id, await working(f"od{batch_id}0R1", 0)

            _, r1 = await shut_down_during(second)
            assert (await venue_orders())[r0["tag"]]["status"] == "CANCELLED"

            # -- third start: recovery cancels R1 (nothing filled) and flattens with R2
            await faults()
            async with open_test_service(tmp_path, **options) as running, api(running) as http:

                async def final() -> dict[str, Any] | None:
                    response = await http.get(f"/accounts/primary/batch-orders/{batch_id}")
                    result: dict[str, Any] = response.json()
                    return result if result.get("status") in FINAL else None

                result = await until(final, "recovery finishes the batch")
        assert result["status"] == "rolled_back", result
        rollback = result["legs"][0]["rollback"]
        assert (rollback["action"], rollback["filled"], rollback["remaining"]) == (
            "flattened", 150, 0), rollback
        assert result["legs"][1]["status"] == "REJECTED"
        positions = (await kite.get("/portfolio/positions")).json()["data"]["net"]
        assert {p["tradingsymbol"]: p["quantity"] for p in positions if p["quantity"]} == {}
        orders = (await kite.get("/orders")).json()["data"]
        placed = tags(orders)
        assert set(placed) == {f"od{batch_id}{n}" for n in ("0L0", "1L0", "0R0", "0R1", "0R2")}
        assert all(n == 1 for n in placed.values()), placed
        assert all(o["status"] in ("COMPLETE", "CANCELLED", "REJECTED") for o in orders), orders
        assert r1["tag"] == f"od{batch_id}0R1"
