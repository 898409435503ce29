"""[cluster] in one process: two nodes (two services) on one Postgres, one Redis and one paper
venue. An account's actor runs on one node only; the standby takes over when the owner stops,
and the seq continues; an owner cut off from Redis stops before its lease expires there; an
owner whose epoch was bumped behind its back steps down instead of crashing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import coredis
import trio
import trio_asyncio

from brokers.paper import VenueAddress
from supervision.service import Running
from tests.fixtures_cluster import REDIS_URL, cluster_settings, cluster_toml, redis_proxy
from tests.fixtures_orders import leg
from tests.fixtures_service import ADMIN, api, open_test_service
from tests.fixtures_venue import kite_http, order_form, place, venue_orders
from tests.fixtures_waits import wait_until
from tests.test_metrics import scrape


def node(tmp_path: Path, pg_url: str, venue: VenueAddress, prefix: str, name: str,
         **cluster: Any) -> Any:
    (tmp_path / name).mkdir(exist_ok=True)
    return open_test_service(
        tmp_path / name, database=pg_url, environ={"ORDERDESK_VENUE_URL": venue.rest_url},
        extra_toml=cluster_toml(cluster_settings(prefix, name, **cluster)),
    )


async def run_node(tmp_path: Path, pg_url: str, venue: VenueAddress, prefix: str, name: str,
                   stop: trio.Event, stopped: trio.Event, *, task_status: Any) -> None:
    """A node in a task of its own, so that it can stop while another runs on."""
    try:
        async with node(tmp_path, pg_url, venue, prefix, name) as running:
            task_status.started(running)
            await stop.wait()
    finally:
        stopped.set()


def state(running: Running, account: str = "primary") -> str:
    assert running.cluster is not None
    return running.cluster.owners[account].state


async def owner_view(running: Running, account: str = "primary") -> dict[str, Any]:
    async with api(running, ADMIN) as http:
        response = await http.get("/admin/actors")
    assert response.status_code == 200, response.text
    return response.json()["accounts"][account]["owner"]


async def seqs(pg_url: str, account: str = "primary") -> list[int]:
    conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(pg_url)
    try:
        rows = await trio_asyncio.aio_as_trio(conn.fetch)(
            "SELECT seq FROM order_events WHERE account = $1 ORDER BY seq", account)
        return [r["seq"] for r in rows]
    finally:
        await trio_asyncio.aio_as_trio(conn.close)()


async def test_one_owner_and_the_standby_takes_over_with_the_seq(
    aio_loop: Any, tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    with trio.fail_after(40):
        stop_a, a_stopped = trio.Event(), trio.Event()
        async with trio.open_nursery() as nursery, kite_http(venue) as kite:
            a = await nursery.start(run_node, tmp_path, pg_url, venue, key_prefix, "a", stop_a,
                                    a_stopped)
            assert state(a) == "owner" and state(a, "secondary") == "owner"
            await place(kite, order_form())
            await wait_until(lambda: a.actors["primary"].seq >= 1, "a to commit the order")
            async with node(tmp_path, pg_url, venue, key_prefix, "b") as b:
                assert state(b) == "standby"
                assert b.actors["primary"].seq == 0  # its actor never ran
                seen_from_b = await owner_view(b)
                assert (seen_from_b["node"], seen_from_b["state"]) == ("a", "standby")
                seen_from_a = await owner_view(a)
                assert (seen_from_a["node"], seen_from_a["epoch"]) == ("a", 1)
                entry = b.health.get("account:primary")
                assert entry is not None and entry.upstream == "standby"
                assert entry.upstream_watch is None  # its silence there is not a stall
                # orders for an account another node owns are refused, nothing placed
                placed = len(await venue_orders(kite))
                async with api(b) as http:
                    response = await http.post("/accounts/primary/batch-orders", json={
                        "orders": [leg()], "rollback_on_failure": True})
                    assert response.status_code == 503, response.text
                    assert "owned by another node" in response.json()["message"]
                    response = await http.post("/accounts/primary/kill")
                    assert response.status_code == 503, response.text
                assert len(await venue_orders(kite)) == placed
                last = a.actors["primary"].seq
                stop_a.set()  # a stops (and gives its leases up)
                await a_stopped.wait()
                await wait_until(lambda: state(b) == "owner", "b to take primary over", 5)
                await wait_until(lambda: b.actors["primary"].seq == last, "b to load the seq")
                assert (await owner_view(b))["epoch"] == 2
                await place(kite, order_form(price=20001))
                await wait_until(lambda: b.actors["primary"].seq > last, "b to commit")
                assert await seqs(pg_url) == list(range(1, b.actors["primary"].seq + 1))


async def test_an_owner_cut_off_from_redis_stops_before_its_lease_expires(
    aio_loop: Any, tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    with trio.fail_after(40):
        async with (
            redis_proxy() as proxy,
            # a margin of 1 s: a steps down 1 s before Redis expires its key, so a loaded
            # machine (a late step-down, or a late look from this test) cannot blur the two
            node(tmp_path, pg_url, venue, key_prefix, "a", url=proxy.url, lease_s=3.0,
                 renew_s=0.3, margin_s=1.0) as a,
            node(tmp_path, pg_url, venue, key_prefix, "b") as b,
            coredis.Redis.from_url(REDIS_URL, decode_responses=True) as redis,
        ):
            assert state(a) == "owner" and state(b) == "standby"
            key = f"{{{key_prefix}:acct:primary}}:lease"
            proxy.freeze()
            await wait_until(lambda: state(a) == "standby", "a to stop owning", 5,
                             poll_s=0.005)
            left_ms = await redis.pttl(key)
            assert await redis.get(key) == "a" and left_ms > 0, left_ms  # still a's in Redis
            await wait_until(lambda: state(b) == "owner", "b to take over after expiry", 5)
            assert (await owner_view(b))["epoch"] == 2


async def test_a_fenced_owner_steps_down_and_takes_the_account_again(
    aio_loop: Any, tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    """The epoch bumped behind a's back (as a second holder after a Redis failover would): a's
    next write is refused, it steps down without crashing, and (holding the lease alone) takes
    the account again under a new epoch; the order reaches the store once."""
    with trio.fail_after(40):
        async with (
            # a long lease: on a loaded machine a late renewal must not step a down first
            node(tmp_path, pg_url, venue, key_prefix, "a", lease_s=6.0, renew_s=0.5,
                 margin_s=1.0) as a,
            kite_http(venue) as kite,
        ):
            owner = a.cluster.owners["primary"] if a.cluster else None
            assert owner is not None and owner.epoch == 1
            conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(pg_url)
            try:
                await trio_asyncio.aio_as_trio(conn.execute)(
                    "UPDATE account_owner SET epoch = epoch + 1, node = 'intruder'"
                    " WHERE account = 'primary'")
            finally:
                await trio_asyncio.aio_as_trio(conn.close)()
            order_id = await place(kite, order_form())
            await wait_until(lambda: owner.step_downs == 1, "a to step down")
            assert owner.last_step_down is not None and "fenced out" in owner.last_step_down
            await wait_until(lambda: owner.state == "owner" and owner.epoch == 3,
                             "a to own primary again")
            await wait_until(lambda: a.actors["primary"].order(order_id), "the order")
            assert await seqs(pg_url) == list(range(1, a.actors["primary"].seq + 1))
            assert a.health.get("account:primary").restarts == 0  # stepped down, no crash
            samples = await scrape(a)  # what an operator sees of it on /metrics
            primary = (("account", "primary"),)
            assert samples[("orderdesk_cluster_owner", primary)] == 1.0
            assert samples[("orderdesk_cluster_fenced_out_total", primary)] == 1.0
            assert samples[("orderdesk_cluster_step_downs_total", primary)] == 1.0
            assert samples[("orderdesk_cluster_takeovers_total", primary)] == 2.0
            assert samples[("orderdesk_cluster_calls_fenced_total", primary)] == 0.0
            assert samples[("orderdesk_cluster_renewal_rounds_total", ())] >= 1.0
