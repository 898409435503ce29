"""A batch that finishes within the shutdown grace is answered: SIGTERM (leaving the service)
does not cut its HTTP request at the web front's own, shorter, timeout."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from tests.fixtures_service import api, open_test_service, venue_control
from tests.fixtures_venue import NIFTY_FUT


async def test_a_batch_finishing_within_the_grace_is_answered(tmp_path: Path) -> None:
    answers: list[httpx.Response] = []
    with trio.fail_after(40):
        async with trio.open_nursery() as outside:
            async with open_test_service(tmp_path, grace_s=15) as running:
                async with venue_control(running) as venue:
                    await venue.post("/_venue/faults", json={"latency_ms": 2500})

                async def post() -> None:
                    async with api(running) as http:
                        answers.append(await http.post(
                            "/accounts/primary/batch-orders",
                            json={"orders": [
                                {"tradingsymbol": NIFTY_FUT, "exchange": "NFO",
                                 "transaction_type": "BUY", "quantity": 75,
                                 "order_type": "MARKET", "product": "NRML"},
                                {"tradingsymbol": NIFTY_FUT, "exchange": "NFO",
                                 "transaction_type": "SELL", "quantity": 75,
                                 "order_type": "MARKET", "product": "NRML"},
                            ]},
                        ))

                outside.start_soon(post)
                await running.batches.statistics_until(lambda stats: stats.batches_running >= 1)
            # the service has shut down gracefully here; the request got its answer
    [answer] = answers
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "success", answer.text
