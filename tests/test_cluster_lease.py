"""The Redis lease of [cluster] on a real Redis: acquire, renew, refuse a steal, lose, release;
the holder's deadline counts from when a renewal was sent, minus the margin."""

from __future__ import annotations

import trio

from supervision.lease import REDIS_ERRORS, open_leases
from tests.fixtures_cluster import cluster_settings, redis_proxy
from tests.fixtures_waits import wait_until


async def test_acquire_renew_and_a_steal_refused(key_prefix: str) -> None:
    with trio.fail_after(10):
        async with (open_leases(cluster_settings(key_prefix, "a")) as a,
                    open_leases(cluster_settings(key_prefix, "b")) as b):
            assert a.key("acc") == f"{{{key_prefix}:acct:acc}}:lease"  # one hash slot
            sent = trio.current_time()
            lease = await a.acquire("acc")
            assert lease is not None
            assert sent <= lease.renewed_at and lease.deadline <= trio.current_time() + 1.2
            assert lease.deadline == lease.renewed_at + 1.5 - 0.3
            assert await b.acquire("acc") is None  # held: no steal
            node, left = await b.holder("acc")
            assert node == "a" and left is not None and 0 < left <= 1.5
            before = lease.deadline
            await trio.sleep(0.05)  # let the monotonic clock move (the renewal's send time)
            assert await a.renew(lease)
            assert lease.deadline > before
            # the other node can neither renew nor release what it does not hold
            stolen = await b.acquire("other")
            assert stolen is not None
            stolen.key = lease.key
            assert not await b.renew(stolen)
            await b.release(stolen)
            assert (await b.holder("acc"))[0] == "a"
            # the holder's release frees it at once
            await a.release(lease)
            assert lease.remaining() <= 0
            assert await b.acquire("acc") is not None


async def test_an_expired_lease_is_lost_and_taken(key_prefix: str) -> None:
    with trio.fail_after(10):
        short = dict(lease_s=0.4, renew_s=0.1, margin_s=0.1)
        async with (open_leases(cluster_settings(key_prefix, "a", **short)) as a,
                    open_leases(cluster_settings(key_prefix, "b", **short)) as b):
            lease = await a.acquire("acc")
            assert lease is not None
            taken = await wait_until(lambda: b.acquire("acc"), "b to take the expired lease")
            assert lease.remaining() <= 0  # a's own deadline passed before Redis let b in
            assert not await a.renew(lease)  # lost: renewing does not take it back
            assert (await a.holder("acc"))[0] == "b" and taken.remaining() > 0


async def test_one_node_id_twice_never_owns_twice(key_prefix: str) -> None:
    """Two processes given the same node id (or one restarted within its lease): the second
    waits for the lease to be free, it does not take it as its own."""
    async with (open_leases(cluster_settings(key_prefix, "a")) as first,
                open_leases(cluster_settings(key_prefix, "a")) as again):
        assert await first.acquire("acc") is not None
        assert await again.acquire("acc") is None


async def test_redis_unreachable_raises_and_nodes_are_listed(key_prefix: str) -> None:
    with trio.fail_after(10):
        async with redis_proxy() as proxy:
            async with open_leases(cluster_settings(key_prefix, "a", url=proxy.url)) as a:
                await a.announce()
                nodes = await a.nodes()
                assert list(nodes) == ["a"] and nodes["a"]["advertised"] == "http://a"
                lease = await a.acquire("acc")
                assert lease is not None
                proxy.freeze()
                try:
                    await a.renew(lease)
                except REDIS_ERRORS:
                    pass
                else:
                    raise AssertionError("a renewal through a frozen proxy succeeded")
