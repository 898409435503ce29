"""The web front fails; nothing else does.

`WebFront.fail` makes the running server raise, as a crash would. The supervisor restarts it
on the same port while a batch is in flight (its fills held by the venue) and orders keep
flowing: the batch finishes, the account's seq keeps advancing, and a client that reconnects
with `since` gets every update it missed.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import trio
import trio_websocket

from supervision.service import Running
from tests.fixtures_service import TOKENS, api, open_test_service, venue_control
from tests.fixtures_venue import NIFTY_FUT
from tests.fixtures_web import Reader, place_market


async def _restarted(running: Running) -> None:
    entry = running.health.get("web")
    assert entry is not None
    await entry.changes.until(lambda: entry.restarts >= 1 and entry.state == "running")


async def _batch(running: Running, key: str) -> httpx.Response:
    async with api(running) as http:
        return await http.post(
            "/accounts/primary/batch-orders", headers={"Idempotency-Key": key},
            json={"orders": [{"tradingsymbol": NIFTY_FUT, "exchange": "NFO",
                              "transaction_type": "BUY", "quantity": 75, "order_type": "MARKET",
                              "product": "NRML"}], "timeout_s": 20},
        )


async def test_a_failed_web_front_is_restarted_while_everything_else_runs(
    tmp_path: Path,
) -> None:
    async with open_test_service(tmp_path) as running, venue_control(running) as venue:
        actor = running.actors["primary"]
        await venue.post("/_venue/faults", json={"fill_delay_ms": 1500})
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                cut: list[BaseException] = []

                async def in_flight() -> None:
                    try:
                        await _batch(running, "restart-drill")
                    except httpx.HTTPError as exc:  # its connection goes with the server
                        cut.append(exc)

                nursery.start_soon(in_flight)
                await running.batches.statistics_until(lambda stats: stats.batches_running >= 1)
                seen = actor.seq
                running.web.fail("drill")
                await _restarted(running)
                with actor.watch("drillflow") as updates:  # orders keep flowing meanwhile
                    await place_market(running.venue, tag="drillflow")
                    await updates.receive()  # heard once committed and sent out
                assert actor.seq > seen
            # the same port answers again; the batch finished (same key: its stored result)
            answer = await _batch(running, "restart-drill")
            assert answer.status_code == 200 and answer.json()["status"] == "success", answer.text
            async with trio.open_nursery() as nursery:
                ws = await trio_websocket.connect_websocket_url(
                    nursery, f"ws://{running.web_bind}/ws/orders/primary?since={seen}",
                    extra_headers=[(b"Authorization", f"Bearer {TOKENS['primary']}".encode())],
                )
                got = await Reader(ws).orders_until_seq(actor.seq)
                assert [m["seq"] for m in got] == list(range(seen + 1, actor.seq + 1))
                nursery.cancel_scope.cancel()
        entry = running.health.get("web")
        assert entry is not None and entry.restarts == 1
