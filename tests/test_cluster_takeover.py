"""[cluster] takeover with real processes: the owner `kill -9`ed mid-batch, the standby takes the
account over and recovers the batch as a restart would (by tag, at the broker): the venue's
positions are flat again and no tag was placed twice. The venue runs in the test's process, so
it outlives the nodes as a broker would."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import trio

from brokers.paper import VenueAddress
from tests.fixtures_cli import cli_env, running_orderdesk
from tests.fixtures_cluster import NODE_LEASE_S, bind_of, node_config, owner_is, primary
from tests.fixtures_orders import batch_concluded, leg, post_batch_never_answered
from tests.fixtures_service import TOKENS
from tests.fixtures_venue import BANKNIFTY_FUT, NIFTY_FUT, kite_http, net_positions
from tests.fixtures_waits import wait_until

KEY = "takeover-1"


def client(config: Path) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://{bind_of(config)}", timeout=30,
                             headers={"Authorization": f"Bearer {TOKENS['primary']}"})


async def post_batch(config: Path, body: dict[str, Any]) -> None:
    """The client whose request dies with its node: no answer ever comes."""
    async with client(config) as api:
        await post_batch_never_answered(api, body, KEY)


async def test_the_new_owner_rolls_back_a_batch_the_killed_owner_left(
    tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    env = cli_env(tmp_path, ORDERDESK_VENUE_URL=venue.rest_url)
    a_config = node_config(tmp_path, pg_url, key_prefix, "a")
    b_config = node_config(tmp_path, pg_url, key_prefix, "b")
    body = {"orders": [leg(NIFTY_FUT, "BUY", 75), leg(BANKNIFTY_FUT, "SELL", 35),
                       leg(NIFTY_FUT, "BUY", 75, order_type="LIMIT", price=20000.0)],
            "rollback_on_failure": True, "timeout_s": 60}
    with trio.fail_after(60):
        async with (
            kite_http(venue) as kite,
            running_orderdesk(tmp_path / "a", "serve", "--config", str(a_config), env=env) as a,
            running_orderdesk(tmp_path / "b", "serve", "--config", str(b_config), env=env),
        ):
            assert (await primary(a_config))["owner"]["state"] == "owner"
            assert (await primary(b_config))["owner"]["state"] == "standby"
            assert await net_positions(kite) == {}
            async with trio.open_nursery() as nursery:
                nursery.start_soon(post_batch, a_config, body)

                async def two_filled_one_resting() -> dict[str, str] | None:
                    orders = (await kite.get("/orders")).json()["data"]
                    statuses = sorted(o["status"] for o in orders)
                    done = statuses == ["COMPLETE", "COMPLETE", "OPEN"]
                    return {o["tag"]: o["status"] for o in orders} if done else None

                placed = await wait_until(two_filled_one_resting, "legs 0, 1 filled, 2 resting")
                a.kill()  # SIGKILL: no rollback, no release of the lease
                await a.wait()
            assert await net_positions(kite) == {NIFTY_FUT: 75, BANKNIFTY_FUT: -35}
            batch_id = next(iter(placed))[2:12]

            await wait_until(owner_is(b_config), "b to own primary", NODE_LEASE_S + 5)

            async with client(b_config) as api:
                result = await batch_concluded(api, batch_id, "b to recover the batch", 15)
                assert result["status"] == "rolled_back", result
                assert [item["rollback"]["action"] for item in result["legs"]] == [
                    "flattened", "flattened", "cancelled"]
                assert await net_positions(kite) == {}
                orders = (await kite.get("/orders")).json()["data"]
                assert Counter(o["tag"] for o in orders) == Counter(
                    [*placed, f"od{batch_id}0R0", f"od{batch_id}1R0"])
                # The client retrying with the same key on the new owner gets that result.
                retry = await api.post("/accounts/primary/batch-orders", json=body,
                                       headers={"Idempotency-Key": KEY})
                assert retry.status_code == 200 and retry.json() == result
                assert len((await kite.get("/orders")).json()["data"]) == 5
