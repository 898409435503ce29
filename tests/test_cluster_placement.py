"""Placement (weighted rendezvous hashing), with no I/O: stable, spread, weights respected, and
a node joining or leaving moves only the accounts it takes or had."""

from __future__ import annotations

from collections import Counter

from supervision.lease import open_leases
from supervision.placement import Placement, live_nodes, place
from tests.fixtures_cluster import cluster_settings

ACCOUNTS = [f"acct-{i}" for i in range(3000)]


def placed(nodes: dict[str, float]) -> dict[str, str | None]:
    return {account: place(account, nodes) for account in ACCOUNTS}


def test_stable_whatever_the_order_of_the_nodes() -> None:
    one = placed({"a": 1.0, "b": 1.0, "c": 1.0})
    assert one == placed({"c": 1.0, "a": 1.0, "b": 1.0})
    assert place("x", {}) is None


def test_spread_evenly_over_equal_nodes() -> None:
    counts = Counter(placed(dict.fromkeys("abc", 1.0)).values())
    for node in "abc":
        assert abs(counts[node] - 1000) < 100, counts


def test_weight_respected() -> None:
    counts = Counter(placed({"a": 1.0, "b": 3.0}).values())
    share = counts["b"] / len(ACCOUNTS)
    assert 0.72 < share < 0.78, counts


def test_a_node_joining_takes_only_its_share_from_the_others() -> None:
    before = placed(dict.fromkeys("abc", 1.0))
    after = placed(dict.fromkeys("abcd", 1.0))
    moved = [account for account in ACCOUNTS if before[account] != after[account]]
    assert all(after[account] == "d" for account in moved)  # nothing moves between a, b, c
    assert abs(len(moved) - 750) < 100, len(moved)


def test_a_node_leaving_moves_only_its_own() -> None:
    before = placed(dict.fromkeys("abc", 1.0))
    after = placed(dict.fromkeys("ab", 1.0))
    assert all(before[account] == "c" for account in ACCOUNTS if before[account] != after[account])


def test_live_nodes_are_those_seen_within_the_window() -> None:
    announced = {"a": {"seen_at": 100.0, "weight": 2}, "b": {"seen_at": 90.0},
                 "c": {"seen_at": 99.0}, "d": {"seen_at": "never"},
                 "e": {"seen_at": 100.0, "weight": 0}}
    assert live_nodes(announced, now=100.0, window_s=4.0) == {"a": 2.0, "c": 1.0}



async def test_a_node_missing_from_a_read_stays_live_until_its_window_ends() -> None:
    """Redis restarted empty: the nodes hash is gone until each node announces again (the
    client connects lazily: nothing is sent here)."""
    async with open_leases(cluster_settings("t", "a", lease_s=4.0)) as leases:
        placement = Placement(leases)
        assert placement.update({"b": {"seen_at": 100.0}}, now=100.0)
        assert placement.nodes == {"a": 1.0, "b": 1.0}
        assert not placement.update({}, now=102.0)  # gone from Redis, seen 2 s ago: live
        assert placement.update({}, now=104.5)  # 4.5 s: dead
        assert placement.nodes == {"a": 1.0} and placement.seen == {}
