"""[cluster] the window the fence cannot close, closed after the fact: an owner paused after
its lease check and before its POST left sends the order late, tagged with a leg the new owner's
recovery already concluded NOT_PLACED. The owner is stopped (SIGSTOP) with legs stored PLACING
and waiting for their turn (one order a second, as in test_cluster_paused_owner.py); the
standby takes the account over and rolls the batch back; then the stalled POST lands (posted
here with the account's token, as the stopped node would have). The new owner's guard undoes
it (actors/orders/late_orders.py): flat at the venue, named on the batch, counted in /metrics."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import trio

from brokers.paper import VenueAddress
from tests.fixtures_cli import cli_env, running_orderdesk
from tests.fixtures_cluster import (
    NODE_LEASE_S,
    node_client,
    node_config,
    owner_is,
    primary,
    primary_metric,
)
from tests.fixtures_orders import batch_concluded, leg
from tests.fixtures_venue import kite_http, market_form, net_positions
from tests.fixtures_waits import wait_until

LEGS = 3



async def late_orders_counted(config: Path) -> float:
    return await primary_metric(config, "orderdesk_late_orders_total")


async def test_a_paused_owners_late_order_is_undone_by_the_new_owner(
    tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    env = cli_env(tmp_path, ORDERDESK_VENUE_URL=venue.rest_url)
    one_a_second = "orders_per_s = 1\n"
    a_config = node_config(tmp_path, pg_url, key_prefix, "a", limits_toml=one_a_second)
    b_config = node_config(tmp_path, pg_url, key_prefix, "b", limits_toml=one_a_second)
    body = {"orders": [leg(quantity=75 * (i + 1)) for i in range(LEGS)],
            "rollback_on_failure": True, "timeout_s": 60}

    async def post_batch() -> None:
        async with node_client(a_config) as api:
            try:
                await api.post("/accounts/primary/batch-orders", json=body,
                               headers={"Idempotency-Key": "late-1"})
            except httpx.TransportError:
                pass  # its node was stopped, then stepped down

    with trio.fail_after(120):
        async with (
            kite_http(venue) as kite,
            running_orderdesk(tmp_path / "a", "serve", "--config", str(a_config), env=env) as a,
            running_orderdesk(tmp_path / "b", "serve", "--config", str(b_config), env=env),
            trio.open_nursery() as nursery,
        ):
            assert (await primary(a_config))["owner"]["state"] == "owner"
            nursery.start_soon(post_batch)

            async def first_leg_at_the_venue() -> list[dict[str, Any]] | None:
                return (await kite.get("/orders")).json()["data"] or None

            await wait_until(first_leg_at_the_venue, "the first leg at the venue", 30,
                             poll_s=0.01)
            a.send_signal(signal.SIGSTOP)
            try:
                at_stop = {o["tag"] for o in (await kite.get("/orders")).json()["data"]}
                batch_id = next(iter(at_stop))[2:12]
                await wait_until(owner_is(b_config), "b to own primary", NODE_LEASE_S + 20)
                async with node_client(b_config) as api:
                    result = await batch_concluded(api, batch_id, "b to recover the batch", 30)
                assert result["status"] == "rolled_back", result
                waiting = [item for item in result["legs"] if item["status"] == "NOT_PLACED"]
                assert waiting, result
                late_leg = waiting[0]
                quantity = body["orders"][late_leg["index"]]["quantity"]
                # a's stalled POST of that leg leaves the process at last
                response = await kite.post("/orders/regular", data=market_form(
                    tag=late_leg["tag"], quantity=quantity))
                assert response.status_code == 200, response.text
                late_id = response.json()["data"]["order_id"]

                async def late_order_undone() -> dict[str, Any] | None:
                    async with node_client(b_config) as api:
                        got = (await api.get(f"/accounts/primary/batch-orders/{batch_id}")
                               ).json()
                    return got if got.get("late_orders") else None

                result = await wait_until(late_order_undone, "b to undo the late order", 30)
                [late] = result["late_orders"]
                assert (late["tag"], late["order_id"], late["rollback"]["action"]) == (
                    late_leg["tag"], late_id, "flattened"), late
                assert result["status"] == "rolled_back", result
                assert await net_positions(kite) == {}
                assert await late_orders_counted(b_config) == 1
            finally:
                a.send_signal(signal.SIGCONT)
