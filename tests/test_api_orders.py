"""Order routes end to end: HTTP → batch coordinator → Kite adapter → paper venue, asserting at
the venue (its orders and net positions), not only on our response."""

from __future__ import annotations

import trio

from supervision.service import Running
from tests.fixtures_orders import leg
from tests.fixtures_service import ADMIN, TOKENS, api, scrape_metrics, venue_control
from tests.fixtures_venue import net_positions, nifty_symbols, venue_orders
from tests.fixtures_waits import wait_until


async def _counted(service: Running) -> bool:
    return 'batch_orders_total{status="success"} 1.0' in await scrape_metrics(service)


async def test_batch_success_and_stored(service: Running) -> None:
    with trio.fail_after(30):
        async with api(service) as http, venue_control(service) as venue:
            fut, opt = await nifty_symbols(venue)
            body = {"orders": [leg(fut), leg(opt, "SELL")], "rollback_on_failure": True}
            response = await http.post("/accounts/primary/batch-orders", json=body)
            assert response.status_code == 200, response.text
            result = response.json()
            assert result["status"] == "success"
            assert (result["total_orders"], result["succeeded"], result["failed"]) == (2, 2, 0)
            assert len(result["order_ids"]) == 2
            assert all(len(leg_["tag"]) <= 20 for leg_ in result["legs"])
            assert await net_positions(venue) == {fut: 75, opt: -75}
            stored = await http.get(f"/accounts/primary/batch-orders/{result['batch_id']}")
            assert stored.status_code == 200 and stored.json()["status"] == "success"
            # counted once its final status is stored, just after the answer (answer.py)
            await wait_until(
                lambda: _counted(service), "the batch counted in /metrics")


async def test_rejected_leg_rolls_back_to_flat(service: Running) -> None:
    with trio.fail_after(30):
        async with api(service) as http, venue_control(service) as venue:
            fut, opt = await nifty_symbols(venue)
            await venue.post("/_venue/faults", json={"reject_symbols": [opt]})
            body = {"orders": [leg(fut), leg(fut, quantity=150), leg(opt), leg(fut, "SELL")]}
            result = (await http.post("/accounts/primary/batch-orders", json=body)).json()
            assert result["status"] == "rolled_back", result
            assert result["failed"] >= 1
            assert await net_positions(venue) == {}


async def test_invalid_batch_lists_every_problem_and_places_nothing(service: Running) -> None:
    with trio.fail_after(30):
        async with api(service) as http, venue_control(service) as venue:
            fut, _ = await nifty_symbols(venue)
            body = {"orders": [leg(fut), {**leg(fut), "quantity": 10},
                               {**leg(fut), "tag": "mine"}, {**leg("NOSUCH"), "side": 1}]}
            response = await http.post("/accounts/primary/batch-orders", json=body)
            assert response.status_code == 422
            problem = response.json()
            paths = {f["path"] for f in problem["fields"]}
            assert {"orders[1].quantity", "orders[2].tag"} <= paths
            assert any(p.startswith("orders[3]") for p in paths)
            assert problem["correlation_id"] and problem["error"]
            assert await venue_orders(venue) == []
            too_many = {"orders": [leg(fut)] * 11}
            response = await http.post("/accounts/primary/batch-orders", json=too_many)
            assert response.status_code == 422
            not_json = await http.post("/accounts/primary/batch-orders", content=b"{oops",
                                       headers={"Content-Type": "application/json"})
            assert not_json.status_code == 400 and "correlation_id" in not_json.json()


async def test_idempotency_key_places_once(service: Running) -> None:
    with trio.fail_after(30):
        async with api(service) as http, venue_control(service) as venue:
            fut, _ = await nifty_symbols(venue)
            body = {"orders": [leg(fut)]}
            headers = {"Idempotency-Key": "k-123"}
            first, second = [], []

            async def post(into: list) -> None:
                into.append(await http.post("/accounts/primary/batch-orders", json=body,
                                            headers=headers))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(post, first)
                nursery.start_soon(post, second)
            assert first[0].status_code == second[0].status_code == 200
            assert first[0].json()["batch_id"] == second[0].json()["batch_id"]
            assert len(await venue_orders(venue)) == 1
            other = await http.post("/accounts/primary/batch-orders",
                                    json={"orders": [leg(fut, quantity=150)]}, headers=headers)
            assert other.status_code == 409
            assert len(await venue_orders(venue)) == 1


async def test_auth_on_order_routes(service: Running) -> None:
    with trio.fail_after(30):
        async with api(service, token=None) as anonymous:
            response = await anonymous.post("/accounts/primary/batch-orders", json={})
            assert response.status_code == 401 and response.json()["correlation_id"]
        async with api(service, token=TOKENS["secondary"]) as other:
            response = await other.post("/accounts/primary/batch-orders", json={})
            assert response.status_code == 403
            assert (await other.post("/accounts/nobody/kill")).status_code == 404


async def test_single_order_cancel_kill_and_audit(service: Running) -> None:
    with trio.fail_after(30):
        async with api(service) as http, venue_control(service) as venue:
            fut, opt = await nifty_symbols(venue)
            placed = await http.post("/accounts/primary/orders", json=leg(fut))
            assert placed.status_code == 200, placed.text
            limit = {**leg(opt), "order_type": "LIMIT", "price": 0.05}
            resting = await http.post("/accounts/primary/orders", json=limit)
            assert resting.status_code == 200, resting.text
            order_id = resting.json()["order_id"]
            cancelled = await http.delete(f"/accounts/primary/orders/{order_id}")
            assert cancelled.status_code == 200, cancelled.text
            await http.post("/accounts/primary/orders", json=limit)
            report = await http.post("/accounts/primary/kill")
            assert report.status_code == 200, report.text
            assert await net_positions(venue) == {}
            assert all(o["status"] in ("COMPLETE", "CANCELLED", "REJECTED")
                       for o in await venue_orders(venue))
        async with api(service, token=ADMIN) as admin:
            audit = (await admin.get("/admin/audit", params={"account": "primary"})).json()
            actors = {e["actor_name"] for e in audit["entries"]}
            assert "primary-desk" in actors
            assert TOKENS["primary"] not in str(audit)
