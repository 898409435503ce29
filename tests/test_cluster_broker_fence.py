"""[cluster] fencing at the broker, in one process: a node reaching Redis through a proxy the test
freezes, so its lease runs out on its own clock while the test watches.

- A leg whose place call could outlast the owner's lease is not sent (LeaseExpiring): the venue
  sees nothing, the batch fails and rolls back (nothing to undo).
- An owner that loses the account with a leg resting at the broker does not roll back after it
  stepped down: the order stays as it was, the batch stays unfinished, and the account's next
  owner (here the same node, taking the account again under a new epoch) rolls it back.
- A rollback whose calls the fence refuses for a while (renewals late, the node still the
  owner) tries them again once the lease is renewed: the batch rolls back, under one tag per
  reverse. (It used to conclude rollback_failed, a filled leg left open.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import trio

from brokers.paper import VenueAddress
from supervision.ownership import AccountOwner
from supervision.service import Running
from tests.fixtures_cluster import cluster_settings, cluster_toml, redis_proxy
from tests.fixtures_orders import batch_concluded, leg
from tests.fixtures_service import api, open_test_service
from tests.fixtures_venue import kite_http, net_positions, venue_orders
from tests.fixtures_waits import wait_until

#: Valid 3.7 s after each renewal: a 3 s call fits right after one, not 0.7 s into a freeze.
LEASE = dict(lease_s=4.0, renew_s=0.3, margin_s=0.3)
CALL_S = 3.0  # BatchConfig.place_timeout_s


def node(tmp_path: Path, pg_url: str, venue: VenueAddress, prefix: str, url: str,
         lease: dict[str, float] = LEASE) -> Any:
    return open_test_service(
        tmp_path, database=pg_url, environ={"ORDERDESK_VENUE_URL": venue.rest_url},
        extra_toml=cluster_toml(cluster_settings(prefix, "a", url=url, **lease)),
    )


def owner_of(running: Running) -> AccountOwner:
    assert running.cluster is not None
    return running.cluster.owners["primary"]


async def post_filled_and_resting(http: httpx.AsyncClient, answer: dict[str, Any],
                                  timeout_s: float) -> None:
    """A batch of a MARKET leg (fills) and a LIMIT leg far from the market (rests); its
    answer into `answer`."""
    response = await http.post("/accounts/primary/batch-orders", json={
        "orders": [leg(), leg(order_type="LIMIT", price=20000.0)],
        "rollback_on_failure": True, "timeout_s": timeout_s})
    assert response.status_code == 200, response.text
    answer.update(response.json())


async def one_filled_one_resting(kite: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The venue's orders once one leg filled and the other rests."""

    async def placed() -> list[dict[str, Any]] | None:
        orders = await venue_orders(kite)
        done = sorted(o["status"] for o in orders) == ["COMPLETE", "OPEN"]
        return orders if done else None

    return await wait_until(placed, "one leg filled, one resting")


async def test_a_call_that_could_outlast_the_lease_is_not_sent(
    aio_loop: Any, tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    with trio.fail_after(30):
        async with (
            redis_proxy() as proxy,
            node(tmp_path, pg_url, venue, key_prefix, proxy.url) as a,
            kite_http(venue) as kite,
            api(a) as http,
        ):
            owner = owner_of(a)
            assert owner.state == "owner"
            proxy.freeze()  # renewals stop reaching Redis: the lease runs down

            def lease_short() -> bool:
                return owner.lease is not None and owner.lease.remaining() < CALL_S - 0.1

            await wait_until(lease_short, "the lease to run below a call's timeout", 5,
                             poll_s=0.01)
            assert owner.state == "owner"  # still the owner: its lease has not ended
            response = await http.post("/accounts/primary/batch-orders", json={
                "orders": [leg()], "rollback_on_failure": True})
            assert response.status_code == 200, response.text
            result = response.json()
            assert result["status"] in ("rolled_back", "running"), result
            if result["status"] == "rolled_back":  # concluded before the owner stepped down
                item = result["legs"][0]
                assert "LeaseExpiring" in item["error"] and "lease" in item["error"], item
                assert item["rollback"]["action"] == "none"
            assert await venue_orders(kite) == []  # never sent
            assert owner.calls_fenced >= 1
            await wait_until(lambda: owner.state == "standby", "a to step down", 5)


async def test_an_owner_that_lost_the_account_leaves_the_rollback_to_the_next_owner(
    aio_loop: Any, tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    with trio.fail_after(40):
        async with (
            redis_proxy() as proxy,
            node(tmp_path, pg_url, venue, key_prefix, proxy.url) as a,
            kite_http(venue) as kite,
            api(a) as http,
            trio.open_nursery() as nursery,
        ):
            owner = owner_of(a)
            assert owner.state == "owner" and owner.epoch is not None
            first_epoch = owner.epoch
            answer: dict[str, Any] = {}

            nursery.start_soon(post_filled_and_resting, http, answer, 6)
            orders = await one_filled_one_resting(kite)
            proxy.freeze()
            await wait_until(lambda: owner.state == "standby", "a to step down", 5)
            await wait_until(lambda: answer, "the batch's answer (its deadline)", 10)
            # Past its deadline the batch did not roll back (its cancel, refused by the fence
            # or never tried): a no longer owns the account. Unfinished, for the next owner.
            assert answer["status"] in ("running", "rolling_back"), answer
            assert sorted(o["status"] for o in await venue_orders(kite)) == [
                "COMPLETE", "OPEN"]
            assert len(await venue_orders(kite)) == 2

            proxy.thaw()  # a takes the account again under a new epoch, and recovers the batch
            await wait_until(lambda: owner.state == "owner" and owner.epoch != first_epoch,
                             "a to own primary again", 10)
            batch_id = answer["batch_id"]

            result = await batch_concluded(http, batch_id, "the batch recovered")
            assert result["status"] == "rolled_back", result
            assert await net_positions(kite) == {}
            tags = sorted(o["tag"] for o in await venue_orders(kite))
            assert tags == sorted([*(o["tag"] for o in orders), f"od{batch_id}0R0"])


#: Refusing 4.7 s after the last renewal (7.7 s left < the 3 s call), expiring 3 s later.
LONG_LEASE = dict(lease_s=8.0, renew_s=0.3, margin_s=0.3)


async def test_a_rollback_the_fence_holds_up_goes_on_once_the_lease_is_renewed(
    aio_loop: Any, tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    with trio.fail_after(40):
        async with (
            redis_proxy() as proxy,
            node(tmp_path, pg_url, venue, key_prefix, proxy.url, LONG_LEASE) as a,
            kite_http(venue) as kite,
            api(a) as http,
            trio.open_nursery() as nursery,
        ):
            owner = owner_of(a)
            first_epoch = owner.epoch
            answer: dict[str, Any] = {}

            # Its deadline (6.5 s) falls after the fence starts refusing (at most 6.2 s), well
            # before the lease would run out (at least 7.9 s).
            nursery.start_soon(post_filled_and_resting, http, answer, 6.5)
            orders = await one_filled_one_resting(kite)
            proxy.freeze()  # renewals stop: the fence refuses once less than 3 s is left
            await wait_until(lambda: owner.calls_fenced >= 2,
                             "the rollback's cancel and reverse refused", 10)
            assert owner.state == "owner"
            proxy.thaw()  # renewed: the refused calls go out on their next try
            await wait_until(lambda: answer, "the batch's answer", 15)
            assert answer["status"] == "rolled_back", answer
            assert (owner.state, owner.epoch) == ("owner", first_epoch)  # never stepped down
            assert await net_positions(kite) == {}
            tags = sorted(o["tag"] for o in await venue_orders(kite))
            batch_id = answer["batch_id"]
            assert tags == sorted([*(o["tag"] for o in orders), f"od{batch_id}0R0"])
