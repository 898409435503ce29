"""[cluster] fan-out across nodes with real processes: `orderdesk serve` nodes on one Postgres and
one Redis, trading on one paper venue (in the test's process). A subscriber connected to a node
that does not own the account is fed from the account's Redis stream: it sees every seq, and
resumes with `since` on any node (another standby, or the owner) with no gap and nothing twice.
Redis emptied under load (every key of the test's prefix, leases too): the next append fills the
stream from the store and the subscriber misses nothing."""

from __future__ import annotations

from pathlib import Path

import coredis
import trio

from brokers.paper import VenueAddress
from supervision.stream_append import stream_key
from tests.fixtures_cli import cli_env, running_orderdesk
from tests.fixtures_cluster import (
    REDIS_URL,
    Follower,
    node_config,
    primary,
    primary_metric,
)
from tests.fixtures_venue import kite_http, order_form, place
from tests.fixtures_waits import wait_until


async def owner_seq(*configs: Path) -> int | None:
    """The seq of account primary at the node that owns it (None: no owner now)."""
    for config in configs:
        try:
            view = await primary(config)
        except OSError:  # a node killed by the test
            continue
        if view["owner"]["state"] == "owner":
            return int(view["seq"])
    return None


def caught_up(follower: Follower, *configs: Path, at_least: int = 0):  # noqa: ANN201
    """A check for `wait_until`: the follower has seen the owner's last seq (>= `at_least`)."""
    async def check() -> bool:
        seq = await owner_seq(*configs)
        return seq is not None and seq >= at_least and follower.last == seq

    return check


async def follow_until_cancelled(follower: Follower, config: Path,
                                 *, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
    with trio.CancelScope() as scope:
        task_status.started(scope)
        await follower.follow(config)


async def test_a_subscriber_on_a_standby_sees_every_seq_and_resumes_on_any_node(
    tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    env = cli_env(tmp_path, ORDERDESK_VENUE_URL=venue.rest_url)
    a, b, c = (node_config(tmp_path, pg_url, key_prefix, name) for name in "abc")
    follower = Follower()
    with trio.fail_after(120):
        async with (
            kite_http(venue) as kite,
            running_orderdesk(tmp_path / "a", "serve", "--config", str(a), env=env),
        ):
            assert (await primary(a))["owner"]["state"] == "owner"
            async with (
                running_orderdesk(tmp_path / "b", "serve", "--config", str(b), env=env) as b_node,
                running_orderdesk(tmp_path / "c", "serve", "--config", str(c), env=env),
                trio.open_nursery() as nursery,
            ):
                assert (await primary(b))["owner"]["state"] == "standby"
                await nursery.start(follow_until_cancelled, follower, b)
                await wait_until(lambda: follower.snapshots == 1, "b's snapshot")
                for price in range(20000, 20004):
                    await place(kite, order_form(price=price))
                await wait_until(caught_up(follower, a, at_least=4), "every seq through b")

                b_node.kill()  # the subscriber's node dies
                await b_node.wait()
                await wait_until(lambda: len(follower.closes) == 1, "the socket to drop")
                for price in range(20004, 20008):  # while the subscriber is away
                    await place(kite, order_form(price=price))
                on_c = await nursery.start(follow_until_cancelled, follower, c)
                await wait_until(caught_up(follower, a, at_least=8), "the missed ones from c")
                for price in range(20008, 20010):  # and live through c
                    await place(kite, order_form(price=price))
                await wait_until(caught_up(follower, a, at_least=10), "every seq through c")
                assert await primary_metric(c, "orderdesk_cluster_stream_deliveries_total") > 0

                on_c.cancel()  # and back on the owner itself
                await nursery.start(follow_until_cancelled, follower, a)
                for price in range(20010, 20012):
                    await place(kite, order_form(price=price))
                await wait_until(caught_up(follower, a, at_least=12), "every seq through a")
                nursery.cancel_scope.cancel()
    assert follower.snapshots == 1, follower  # the resumes were replays, not snapshots
    assert follower.gaps_and_repeats() == ([], []), follower.seqs


async def test_redis_emptied_under_load_the_stream_is_refilled_and_nothing_is_missed(
    tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    env = cli_env(tmp_path, ORDERDESK_VENUE_URL=venue.rest_url)
    a, b = (node_config(tmp_path, pg_url, key_prefix, name) for name in "ab")
    follower = Follower()
    redis = coredis.Redis.from_url(REDIS_URL, decode_responses=True)
    with trio.fail_after(120):
        async with (
            redis,
            kite_http(venue) as kite,
            running_orderdesk(tmp_path / "a", "serve", "--config", str(a), env=env),
            running_orderdesk(tmp_path / "b", "serve", "--config", str(b), env=env),
            trio.open_nursery() as nursery,
        ):
            await nursery.start(follow_until_cancelled, follower, b)
            await wait_until(lambda: follower.snapshots == 1, "b's snapshot")
            for i in range(30):  # under load: an order every 50 ms
                await place(kite, order_form(price=20000 + i))
                if i == 10:  # Redis restarted empty: streams, leases, nodes
                    keys = [k async for k in redis.scan_iter(match=f"{{{key_prefix}:*")]
                    assert stream_key(key_prefix, "primary") in keys
                    await redis.delete(keys)
                await trio.sleep(0.05)
            await wait_until(caught_up(follower, a, b, at_least=30), "every seq through b", 30)
            last = follower.last
            entries = await redis.xrange(stream_key(key_prefix, "primary"))
            seqs = [int(e.identifier.split("-")[0]) for e in entries
                    if e.identifier.endswith("-0")]
            assert seqs == list(range(1, last + 1))  # refilled from the store, then appended
            fills = await primary_metric(a, "orderdesk_cluster_stream_fills_total") + \
                await primary_metric(b, "orderdesk_cluster_stream_fills_total")
            assert fills >= 1
            nursery.cancel_scope.cancel()
    assert follower.gaps_and_repeats() == ([], []), follower.seqs
